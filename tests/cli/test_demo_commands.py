"""``jobhooks demo``: its closing lines lead to the dashboard, and the token they give signs in."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading

import httpx
from support.server import child_env, free_port


def _lines_until(process: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """What the process printed up to the line holding ``marker`` (fails after ``timeout``)."""
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            if marker in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), f"no {marker!r} within {timeout} s:\n{''.join(seen)}"
    return "".join(seen)


def test_the_demo_prints_the_dashboard_and_a_token_that_signs_in() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "jobhooks.cli", "demo", "--agents", "2", "--count", "20",
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=child_env(),
    )  # fmt: skip
    try:
        output = _lines_until(process, "jobhooks completions", 120)
        found = re.search(
            r"Dashboard: (http://\S+/ui/) \(sign in with this admin token: (\S+);",
            output,
        )
        assert found is not None, output
        dashboard, token = found.groups()
        assert dashboard == f"http://127.0.0.1:{port}/ui/"
        assert "jobhooks token create --viewer --config " in output
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as browser:
            form = browser.get("/ui/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf is not None
            signed_in = browser.post("/ui/login", data={"csrf": csrf.group(1), "token": token})
            assert signed_in.status_code == 303, signed_in.text
            overview = browser.get("/ui/")
            assert overview.status_code == 200 and "Sign out" in overview.text
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
