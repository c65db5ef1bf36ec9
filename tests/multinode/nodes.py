"""Several jobhooks processes on one PostgreSQL database: API nodes and workers.

API nodes are :class:`support.server.ServerProcess` with ``--no-worker`` (or
not); workers are ``python -m jobhooks.cli worker``. A :class:`Cluster`
remembers every process it started and stops each by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from pg import PostgresServer
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from support.server import ServerProcess, child_env, wait_for

from jobhooks.store import Store
from jobhooks.store.engine import connect
from jobhooks.store.reads import completion_detail as stored_detail
from jobhooks.store.tables import runs

FINAL = ("succeeded", "dead")


def spawn(
    args: Sequence[str], log: Path, cwd: Path, hostname: str | None = None
) -> subprocess.Popen[bytes]:
    """``python -m jobhooks.cli ARGS`` in a session of its own, output to ``log``.

    With ``hostname`` it runs in a UTS namespace of its own under that host name, as a
    process on another machine would look (its pid then tells nothing to the others).
    """
    command = [sys.executable, "-m", "jobhooks.cli", *args]
    if hostname is not None:
        command = ["unshare", "--uts", "sh", "-c", f'hostname {hostname} && exec "$@"', "-"]
        command += [sys.executable, "-m", "jobhooks.cli", *args]
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(),
            cwd=cwd,
            start_new_session=True,
        )


def stop_all(processes: Sequence[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    """SIGTERM each process still running, then SIGKILL those not gone within ``grace``."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + grace
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def read_log(path: Path, tail: int = 6000) -> str:
    """The end of what a process printed."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-tail:]
    except FileNotFoundError:
        return ""


class ApiNode(ServerProcess):
    """``jobhooks serve --no-worker`` (or with its embedded worker) on a free port."""

    def __init__(self, config: Path, log: Path, *, worker: bool = False) -> None:
        super().__init__(config, log)
        self.with_worker = worker

    def launch(self) -> ApiNode:
        """Start the process without waiting for it (see :meth:`wait_healthy`)."""
        args = ["serve", "--config", str(self.config), "--listen", f"127.0.0.1:{self.port}"]
        if not self.with_worker:
            args.append("--no-worker")
        self.process = spawn(args, self.log_path, self.config.parent)
        return self

    def start(self, timeout: float = 30) -> ApiNode:
        """Start the process and wait until /healthz answers."""
        self.launch()
        self.wait_healthy(timeout)
        return self


class WorkerProcess:
    """``jobhooks worker --config CONFIG``."""

    def __init__(self, config: Path, log: Path, hostname: str | None = None) -> None:
        self.config = config
        self.log_path = log
        self.hostname = hostname
        self.process: subprocess.Popen[bytes] | None = None
        self.killed = False

    def start(self) -> WorkerProcess:
        """Start the process (it is ready once it listens; see :meth:`Cluster.wait_listening`)."""
        self.process = spawn(
            ["worker", "--config", str(self.config)],
            self.log_path,
            self.config.parent,
            self.hostname,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def assert_running(self) -> None:
        """Fail, showing its log, if the worker has exited."""
        assert self.process is not None
        code = self.process.poll()
        assert code is None, f"jobhooks worker exited with {code}:\n{self.log()}"

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.process is not None
        self.killed = True
        self.process.kill()
        self.process.wait(10)

    def log(self, tail: int = 6000) -> str:
        return read_log(self.log_path, tail)


class Cluster:
    """The processes of one test, all on one database, stopped by :meth:`stop`."""

    def __init__(self, directory: Path, server: PostgresServer, url: str) -> None:
        self.directory = directory
        self.server = server
        self.url = url
        self.database = make_url(url).database or ""
        self.engine: Engine = connect(url, pool_size=2)
        self.config = directory / "jobhooks.toml"
        self.apis: list[ApiNode] = []
        self.workers: list[WorkerProcess] = []

    # -- configuration and tokens ----------------------------------------------

    def write_config(self, handlers: str, *, lease: float | None = None, server: str = "") -> Path:
        """Write ``jobhooks.toml`` for this database and ``handlers`` (``[server] lease``
        as given, else its default)."""
        text = (
            "[server]\n"
            f'database = "{self.url}"\n'
            + (f"lease = {lease}\n" if lease is not None else "")
            + textwrap.dedent(server)
            + "\n"
            + textwrap.dedent(handlers)
        )
        self.config.write_text(text, encoding="utf-8")
        return self.config

    def token(self, role: str, agent_id: uuid.UUID | None = None) -> str:
        """A new token (``admin``, ``viewer`` or ``agent`` with ``agent_id``), stored hashed."""
        store = Store(self.url)
        try:
            secret, _info = asyncio.run(store.tokens.create(role, agent_id, f"{role} for the test"))
        finally:
            store.close()
        return secret

    # -- processes -------------------------------------------------------------

    def api(self, *, worker: bool = False, wait: bool = True) -> ApiNode:
        """Start an API node (``--no-worker`` unless ``worker``)."""
        node = ApiNode(self.config, self.directory / f"api-{len(self.apis)}.log", worker=worker)
        self.apis.append(node)
        return node.start() if wait else node.launch()

    def worker(self, hostname: str | None = None) -> WorkerProcess:
        """Start a worker process (under another host name, if given: see :func:`spawn`)."""
        log = self.directory / f"worker-{len(self.workers)}.log"
        process = WorkerProcess(self.config, log, hostname)
        self.workers.append(process)
        return process.start()

    def wait_listening(self, channel: str, count: int, timeout: float = 30) -> None:
        """Wait until ``count`` sessions on the database LISTEN on ``channel``."""

        def probe() -> bool:
            for process in self.workers:
                if not process.killed:
                    process.assert_running()
            return self.server.listeners(self.database, channel) >= count

        wait_for(probe, timeout, f"{count} processes listening on {channel}", 0.05)

    def logs(self) -> str:
        """Every process's log, for a failure message."""
        parts = [f"--- {node.log_path.name}\n{node.log(3000)}" for node in self.apis]
        parts += [f"--- {w.log_path.name}\n{w.log(3000)}" for w in self.workers]
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop every process started (SIGTERM, then SIGKILL), by its PID."""
        processes = [node.process for node in self.apis]
        processes += [worker.process for worker in self.workers]
        stop_all([process for process in processes if process is not None])
        self.engine.dispose()

    # -- the database ----------------------------------------------------------

    def detail(self, completion_id: str) -> dict[str, Any]:
        """The completion with its runs and their attempts, as the operator API shows it."""
        with self.engine.connect() as connection:
            detail = stored_detail(connection, completion_id)
        assert detail is not None, f"no completion {completion_id}"
        return detail.as_json()

    def run_counts(self) -> dict[str, int]:
        """Handler runs by stored status."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(runs.c.status, func.count()).group_by(runs.c.status))
            return {status: int(count) for status, count in rows}

    def wait_all_final(self, expected: int, timeout: float) -> dict[str, int]:
        """Wait until ``expected`` runs exist and every one has succeeded or is dead."""
        last: dict[str, int] = {}

        def probe() -> bool:
            last.clear()
            last.update(self.run_counts())
            return sum(last.get(s, 0) for s in FINAL) >= expected and all(
                status in FINAL for status in last
            )

        try:
            wait_for(probe, timeout, f"{expected} runs to finish", 0.2)
        except AssertionError as exc:
            exc.add_note(f"runs by status: {last}\n{self.logs()}")
            raise
        return last


@contextlib.contextmanager
def running_cluster(directory: Path, server: PostgresServer, url: str) -> Iterator[Cluster]:
    """A :class:`Cluster` whose processes are all stopped on exit."""
    cluster = Cluster(directory, server, url)
    try:
        yield cluster
    finally:
        cluster.stop()


def completion_detail(client: httpx.Client, completion_id: str) -> dict[str, Any]:
    """GET /api/v1/job-completions/{id} (with an admin or viewer client)."""
    response = client.get(f"/api/v1/job-completions/{completion_id}")
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()
    return detail


def report_at_once(
    nodes: Sequence[ServerProcess],
    token: str,
    body: Callable[[], dict[str, Any]],
    senders: int = 4,
    each: int = 10,
) -> list[dict[str, Any]]:
    """``senders`` orchestrators, spread over ``nodes``, each posting ``each`` reports made
    by ``body`` as fast as they are answered, all starting together; every answer must be
    a 202. Returns the answers."""
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(senders)

    def orchestrator(index: int) -> None:
        with nodes[index % len(nodes)].client(token) as client:
            start.wait()
            for _ in range(each):
                response = client.post("/api/v1/job-completions", json=body())
                assert response.status_code == 202, response.text
                with lock:
                    answers.append(response.json())

    threads = [threading.Thread(target=orchestrator, args=(i,)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers
