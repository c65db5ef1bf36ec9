"""``jobhooks demo`` stopped by a signal leaves no server and no temporary folder behind."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support.server import child_env, free_port


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP], ids=lambda n: n.name)
def test_a_signal_stops_the_server_child_and_removes_the_folder(number: signal.Signals) -> None:
    port = free_port()
    command = ["demo", "--count", "40", "--agents", "2", "--listen", f"127.0.0.1:{port}"]
    demo = subprocess.Popen(
        [sys.executable, "-m", "jobhooks.cli", *command],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        lines = []
        while not lines or not lines[-1].startswith("Still serving"):
            line = demo.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        found = re.search(r"\(data in (.+)\)", "".join(lines))
        assert found is not None, lines
        data = Path(found.group(1))
        assert data.is_dir()
        children = Path(f"/proc/{demo.pid}/task/{demo.pid}/children").read_text().split()
        assert len(children) == 1, children
        demo.send_signal(number)
        demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 0
    assert not Path(f"/proc/{children[0]}").exists(), "the serve child is still running"
    assert not data.exists(), "the temporary folder is left behind"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # the port is free again
