"""``serve``, ``worker`` and ``poll`` log as text or as one JSON object per line, at a level
chosen on the command line or in ``[server]``."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from support.reports import report
from support.server import child_env, free_port, wait_for, write_config

LOG = """
[[handlers]]
name = "audit"
type = "log"
job_types = "*"
"""


class Running:
    """A jobhooks process whose stderr lines are collected as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        assert process.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line)

    def close(self) -> None:
        """Once the process has exited: wait for the last lines, close the pipe."""
        self._reader.join(10)
        assert self.process.stderr is not None
        self.process.stderr.close()

    def until(self, found: Callable[[str], bool], timeout: float = 30) -> str:
        """The first line (from the start) for which ``found`` is true; fail after ``timeout``."""

        def probe() -> str | None:
            while not self._queue.empty():
                self.lines.append(self._queue.get().rstrip("\n"))
            return next((line for line in self.lines if found(line)), None)

        return wait_for(probe, timeout, "a log line:\n" + "\n".join(self.lines))


@contextmanager
def jobhooks(folder: Path, *args: str) -> Iterator[Running]:
    process = subprocess.Popen(
        [sys.executable, "-m", "jobhooks.cli", *args],
        cwd=folder,
        env=child_env(JOBHOOKS_LOG_LEVEL="", JOBHOOKS_CONFIG=""),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Running(process)
    try:
        yield running
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        running.close()


def as_json(line: str) -> dict[str, Any]:
    data = json.loads(line)
    assert isinstance(data, dict), line
    return data


def test_serve_with_json_logs_writes_only_json_lines_the_log_handlers_included(
    tmp_path: Path,
) -> None:
    write_config(tmp_path, LOG)
    token = subprocess.run(
        [sys.executable, "-m", "jobhooks.cli", "token", "create", "--admin"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    port = free_port()
    with jobhooks(
        tmp_path, "serve", "--listen", f"127.0.0.1:{port}", "--log-format", "json"
    ) as serve:
        serve.until(lambda line: "serving on" in line)
        body = report(message="Access denied to store /etc/ssl")
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/job-completions",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 202
        logged = serve.until(lambda line: '"handler": "audit"' in line)
    for line in serve.lines:
        as_json(line)
    completion = as_json(logged)
    assert completion["logger"] == "jobhooks.handlers.log"
    assert completion["job_id"] == body["job_id"]
    assert completion["message"] == "Access denied to store /etc/ssl"
    using = as_json(serve.lines[0])
    assert using["message"].startswith("Using jobhooks.toml (./jobhooks.toml)")


def test_worker_takes_its_format_and_level_from_the_server_section(tmp_path: Path) -> None:
    write_config(tmp_path, LOG, server='log_format = "json"\nlog_level = "debug"')
    with jobhooks(tmp_path, "worker") as worker:
        started = worker.until(lambda line: "started (concurrency" in line)
        worker.until(lambda line: '"DEBUG"' in line)
    assert as_json(started)["logger"] == "jobhooks.worker"
    for line in worker.lines:
        as_json(line)


def test_the_command_line_overrides_the_server_section(tmp_path: Path) -> None:
    write_config(tmp_path, LOG, server='log_format = "json"\nlog_level = "debug"')
    with jobhooks(tmp_path, "worker", "--log-format", "text", "--log-level", "info") as worker:
        started = worker.until(lambda line: "started (concurrency" in line)
    assert " INFO jobhooks.worker: worker " in started
    assert not any(" DEBUG " in line for line in worker.lines)


def test_a_poll_node_logs_json_lines(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/KeyfactorAPI"
    platform = f'[platform]\nurl = "{url}"\n'
    write_config(tmp_path, LOG, extra=platform + "[poll]\ninterval = 1\n")
    with jobhooks(tmp_path, "poll", "--log-format", "json", "--log-level", "info") as poll:
        poll.until(lambda line: "polling http://127.0.0.1" in line)
        failing = poll.until(lambda line: "cannot reach" in line or "unreachable" in line)
    for line in poll.lines:
        as_json(line)
    assert f"cannot reach the platform at {url}/" in as_json(failing)["message"]


def test_an_unknown_level_or_format_is_refused_with_the_choices(tmp_path: Path) -> None:
    write_config(tmp_path, LOG)
    for option, value in (("--log-level", "loud"), ("--log-format", "xml")):
        result = subprocess.run(
            [sys.executable, "-m", "jobhooks.cli", "worker", option, value],
            cwd=tmp_path,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        assert f"{option}: expected one of" in result.stderr and repr(value) in result.stderr
