"""Real ``jobhooks serve`` processes, and the CLI run as orchestrator admins run it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

TESTS_DIR = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a jobhooks process: ``tests`` importable, logs kept short."""
    env = dict(os.environ)
    paths = [str(TESTS_DIR), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("JOBHOOKS_LOG_LEVEL", "WARNING")
    env["COLUMNS"] = "400"
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``jobhooks ARGS`` in a fresh process, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "jobhooks.cli", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout,
        check=False,
    )


def create_tokens(config: Path, *roles: str) -> list[str]:
    """``jobhooks token create`` once per role (``--admin``, ``--viewer`` or an agent GUID);
    returns the tokens in order.

    The first runs alone (it creates the database); the others run in parallel.
    """
    return _create_tokens(config, roles[:1]) + _create_tokens(config, roles[1:])


def _create_tokens(config: Path, roles: tuple[str, ...]) -> list[str]:
    processes = []
    try:
        for role in roles:
            option = [role] if role.startswith("--") else ["--agent", role]
            command = [sys.executable, "-m", "jobhooks.cli", "token", "create", *option]
            processes.append(
                subprocess.Popen(
                    [*command, "--config", str(config)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=child_env(),
                )
            )
        outputs = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    tokens = []
    for role, process, (out, err) in zip(roles, processes, outputs, strict=True):
        assert process.returncode == 0, f"token create {role} failed: {err[-3000:]}"
        lines = out.splitlines()
        assert len(lines) == 1 and lines[0].startswith("jh_"), f"expected the token alone: {out!r}"
        tokens.append(lines[0])
    return tokens


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def write_config(directory: Path, handlers: str, server: str = "", extra: str = "") -> Path:
    """A jobhooks.toml in ``directory``: its own SQLite database (unless ``server`` names
    another) and ``handlers``."""
    path = directory / "jobhooks.toml"
    server = textwrap.dedent(server)
    own = "" if "database" in server else 'database = "sqlite:///data/jobhooks.db"\n'
    text = (
        "[server]\n"
        + own
        + server
        + "\n"
        + textwrap.dedent(extra)
        + "\n"
        + textwrap.dedent(handlers)
    )
    path.write_text(text, encoding="utf-8")
    return path


class ServerProcess:
    """One ``python -m jobhooks.cli serve`` on a free loopback port."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log_path = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> ServerProcess:
        """Start the process and wait until /healthz answers."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jobhooks.cli",
                    "serve",
                    "--config",
                    str(self.config),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
                cwd=self.config.parent,
                start_new_session=True,
            )
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=1) as client:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"jobhooks serve exited with {self.process.returncode}:\n{self.log()}"
                    )
                try:
                    if client.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"jobhooks serve not healthy in {timeout} s:\n{self.log()}"
                    )
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, number: int) -> None:
        """Send a signal to the server process."""
        assert self.process is not None
        self.process.send_signal(number)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within a few seconds."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def log(self, tail: int = 6000) -> str:
        """The end of what the server printed."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def client(self, token: str | None = None, **options: Any) -> httpx.Client:
        """An HTTP client for this server, with ``token`` as its bearer token."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        options.setdefault("timeout", 10)
        return httpx.Client(base_url=self.url, headers=headers, **options)


StartServer = Callable[[Path], ServerProcess]
"""The ``start_server`` fixture: a healthy server for a configuration, stopped after the test."""
