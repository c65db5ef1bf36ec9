"""``jobhooks serve`` says it serves only once it listens, and says why when it cannot."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from support.server import child_env, write_config

LOG = """
[[handlers]]
name = "audit"
type = "log"
job_types = "*"
"""


def serve(config: Path, listen: str) -> subprocess.Popen[str]:
    command = ["serve", "--config", str(config), "--listen", listen]
    return subprocess.Popen(
        [sys.executable, "-m", "jobhooks.cli", *command],
        env=child_env(JOBHOOKS_LOG_LEVEL="INFO"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_port_in_use_is_named_with_how_to_choose_another(tmp_path: Path) -> None:
    config = write_config(tmp_path, LOG)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        process = serve(config, f"127.0.0.1:{port}")
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: port {port} is already in use" in err
    assert f"--listen 127.0.0.1:{port + 1}" in err
    assert "serving on" not in err
    assert "worker" not in err and "Traceback" not in err


def test_the_banner_comes_once_the_port_is_bound_and_names_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, LOG)
    process = serve(config, "127.0.0.1:0")
    try:
        assert process.stderr is not None
        banner = ""
        while "serving on" not in banner:
            banner = process.stderr.readline()
            assert banner, "serve exited without a banner"
        found = re.search(r"serving on http://127\.0\.0\.1:(\d+) ", banner)
        assert found is not None, banner
        port = int(found.group(1))
        assert port != 0
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # already accepting: the banner came after the bind
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
        else:
            raise AssertionError("never healthy")
    finally:
        process.terminate()
        process.communicate(timeout=30)
