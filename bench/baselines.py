"""End-to-end baselines: FastAPI + Celery (Redis broker) and FastAPI + huey (SqliteHuey).

Each run starts uvicorn and the queue worker as subprocesses, posts ``n`` job-completion
reports from ``concurrency`` keep-alive connections (load generator in its own process),
and waits until the worker has run every task. Figures reported:

* check-in: requests/s and ack latency (send -> full 202 response) seen by the clients;
* end to end: ``n`` / (first request sent -> last task finished).

Usage: ``python bench/baselines.py [--n 5000] [--concurrency 64] [--only celery|huey]
[--rate R] [--repeat K] [--wait-idle SECONDS] [--json]``. ``other CPU %`` is the share of
the machine used by unrelated processes during the measured run; figures taken while it
is high are not comparable.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from baseline_apps.completions import RedisCompletions, SqliteCompletions  # noqa: E402
from baseline_apps.report import PATH  # noqa: E402
from cores import pin_server  # noqa: E402
from loadgen import LoadResult, run_load_subprocess  # noqa: E402

__all__ = ["format_table", "make_bodies", "run_celery", "run_huey", "wait_idle"]

REDIS_URL = os.environ.get("BASELINE_REDIS_URL", "redis://127.0.0.1:6379/15")
READY_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0


class Completions(Protocol):
    def read(self) -> tuple[int, float]: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")


_HISTORY_IDS = itertools.count(1)


def make_bodies(n: int, jobs: int | None = None, history_ids: bool = False) -> list[bytes]:
    """``n`` distinct compact JSON job-completion reports of about 400 bytes; one job
    each, or ``jobs`` recurring jobs (each then builds failure streaks and recovers).
    ``history_ids``: each carries a ``job_history_id`` never used before in this process,
    as reports are when the platform numbers its job history (jobhooks looks each up to
    find repeats)."""
    recurring = [str(uuid.uuid4()) for _ in range(jobs or 0)]
    agent = "3b0c8f5e-6a1d-4c57-9f0e-2a7c1d9b4e21"
    job_type_id = str(uuid.UUID(int=0))
    stamp = datetime.now(UTC).replace(microsecond=0).isoformat()
    bodies = []
    for i in range(n):
        report = {
            "agent_id": agent,
            "username": "EXAMPLE\\orchestrator01",
            "client_machine": "orchestrator01.example.com",
            "job_id": recurring[i % len(recurring)] if recurring else str(uuid.uuid4()),
            "job_type": "Inventory",
            "job_type_id": job_type_id,
            "operation_type": "Inventory",
            "job_result": "Failure" if i % 4 == 0 else "Success",
            "certificate_id": None if i % 2 else 1000 + i,
            "request_timestamp": stamp,
            "current_retry_count": i % 3,
            "message": "Inventory of /etc/ssl/certs: access denied to store on the target host",
        }
        if history_ids:
            report["job_history_id"] = next(_HISTORY_IDS)
        bodies.append(json.dumps(report, separators=(",", ":")).encode())
    return bodies


def make_burst(n: int, machines: int) -> list[bytes]:
    """``n`` failures spread over ``machines`` machines (each a job of its own): a burst."""
    bodies = []
    for i, body in enumerate(make_bodies(n)):
        report = json.loads(body)
        report["job_result"] = "Failure"
        report["client_machine"] = f"store{i % machines:02d}.example.com"
        bodies.append(json.dumps(report, separators=(",", ":")).encode())
    return bodies


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _stop(proc: _Proc) -> None:
    """SIGTERM the process, then SIGKILL its process group if it lingers."""
    popen = proc.popen
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            popen.wait(STOP_TIMEOUT_S)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait(STOP_TIMEOUT_S)


@contextmanager
def _spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Iterator[_Proc]:
    """Run ``argv`` in a new process session on the server's core (see ``cores``), output to
    a log file; always stopped on exit."""
    log = log_dir / f"{name}.log"
    with log.open("wb") as fh:
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=BENCH_DIR,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pin_server,
        )
    proc = _Proc(name, popen, log)
    try:
        yield proc
    finally:
        _stop(proc)


def _wait_listening(port: int, proc: _Proc, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{proc.name} not listening on {port} after {timeout_s}s:\n{proc.tail()}")


def _wait_done(
    completions: Completions,
    expected: int,
    procs: Sequence[_Proc],
    timeout_s: float = DRAIN_TIMEOUT_S,
) -> float:
    """Block until ``expected`` tasks have completed; returns the time of the last one."""
    deadline = time.monotonic() + timeout_s
    count = 0
    while time.monotonic() < deadline:
        count, last = completions.read()
        if count >= expected:
            return last
        for proc in procs:
            proc.check_alive()
        time.sleep(0.02)
    raise TimeoutError(f"only {count}/{expected} tasks done after {timeout_s}s")


_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _busy_cpu_s() -> float:
    """CPU time spent by the whole machine (all cores), excluding idle and iowait."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) * _TICK_S


def _own_cpu_s(procs: Sequence[_Proc], extra_pids: Sequence[int]) -> float:
    """CPU time of this process, its reaped children, every live process in the
    process sessions of ``procs``, and ``extra_pids``."""
    times = os.times()
    total = times.user + times.system + times.children_user + times.children_system
    sessions = {p.popen.pid for p in procs}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid = int(stat.parent.name)
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) in sessions or pid in extra_pids:
            total += (int(fields[11]) + int(fields[12])) * _TICK_S
    return total


class _CpuMeter:
    """Share of the machine's CPU used by processes other than the benchmark's own
    (``extra_pids``: shared services the benchmark uses, such as the Redis server)."""

    def __init__(self, procs: Sequence[_Proc], extra_pids: Sequence[int] = ()) -> None:
        self._procs = procs
        self._extra = tuple(extra_pids)
        self._start = (time.monotonic(), _busy_cpu_s(), _own_cpu_s(procs, self._extra))

    def other_cpu_pct(self) -> float:
        wall0, busy0, own0 = self._start
        wall = time.monotonic() - wall0
        others = (_busy_cpu_s() - busy0) - (_own_cpu_s(self._procs, self._extra) - own0)
        return max(0.0, 100.0 * others / (wall * (os.cpu_count() or 1)))


def wait_idle(timeout_s: float, max_busy_pct: float = 10.0, window_s: float = 2.0) -> bool:
    """Wait up to ``timeout_s`` for a ``window_s`` window in which the machine's CPU use is
    below ``max_busy_pct``; returns whether one was seen."""
    deadline = time.monotonic() + timeout_s
    cores = os.cpu_count() or 1
    while True:
        busy0 = _busy_cpu_s()
        time.sleep(window_s)
        if 100.0 * (_busy_cpu_s() - busy0) / (window_s * cores) < max_busy_pct:
            return True
        if time.monotonic() >= deadline:
            return False


def _uvicorn_argv(app: str, port: int) -> list[str]:
    options = f"--host 127.0.0.1 --port {port} --workers 1 --loop uvloop --http httptools"
    return [sys.executable, "-m", "uvicorn", app, *options.split(),
            "--no-access-log", "--log-level", "warning"]  # fmt: skip


def _load(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    rate: float | None = None,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    result = run_load_subprocess(url, bodies, concurrency, headers or {}, rate, deadline_s=120.0)
    if result.count != len(bodies) or set(result.statuses) != {202}:
        raise RuntimeError(
            f"load run failed: statuses={dict(result.statuses)} errors={dict(result.errors)}"
        )
    return result


def _measure(
    url: str,
    completions: Completions,
    procs: Sequence[_Proc],
    n: int,
    concurrency: int,
    warmup: int,
    rate: float | None,
    extra_pids: Sequence[int] = (),
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Warm up (which also proves the worker consumes), then run the measured load."""
    if warmup:
        _load(url, make_bodies(warmup), concurrency, headers=headers)
        _wait_done(completions, warmup, procs)
    completions.reset()
    bodies = make_bodies(n)
    meter = _CpuMeter(procs, extra_pids)
    result = _load(url, bodies, concurrency, rate, headers)
    last_done = _wait_done(completions, n, procs)
    other_cpu = meter.other_cpu_pct()
    e2e_s = last_done - result.started_at
    return {
        "n": n,
        "concurrency": concurrency,
        "rate": rate,
        "checkin_rps": round(result.throughput, 1),
        "ack_p50_ms": round(result.p50, 2),
        "ack_p99_ms": round(result.p99, 2),
        "ack_max_ms": round(result.max_ms, 2),
        "checkin_s": round(result.elapsed_s, 3),
        "e2e_s": round(e2e_s, 3),
        "e2e_rps": round(n / e2e_s, 1),
        "drain_after_last_ack_s": round(last_done - result.finished_at, 3),
        "retried": result.retried,
        "other_cpu_pct": round(other_cpu, 1),
    }


def run_celery(
    n: int = 5000,
    concurrency: int = 64,
    *,
    pool: str = "solo",
    workers: int = 1,
    prefetch: int = 64,
    warmup: int = 500,
    rate: float | None = None,
) -> dict[str, Any]:
    """FastAPI + Celery with the Redis broker (DB flushed before and after).

    Defaults: ``--pool=solo`` with prefetch 64. The task is a no-op, so worker parallelism
    buys nothing on 2 cores; solo avoids prefork's per-task pipe round trip to a child
    (prefork c=1 falls behind ingestion) and leaves the second core to uvicorn and Redis.
    ``rate`` (requests/s) switches the load to an open loop.
    """
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    redis_pid = int(client.info("server")["process_id"])
    completions = RedisCompletions(REDIS_URL)
    log_dir = Path(tempfile.mkdtemp(prefix="baseline-celery-"))
    env = _env({"BASELINE_REDIS_URL": REDIS_URL})
    port = _free_port()
    options = (
        f"--pool {pool} --concurrency {workers} --prefetch-multiplier {prefetch} "
        f"--loglevel WARNING --without-gossip --without-mingle --without-heartbeat "
        f"--hostname baseline-{port}@%h"
    )
    worker_argv = [
        sys.executable, "-m", "celery", "-A", "baseline_apps.celery_app:celery", "worker",
        *options.split(),
    ]  # fmt: skip
    try:
        with ExitStack() as stack:
            web = stack.enter_context(
                _spawn("uvicorn", _uvicorn_argv("baseline_apps.celery_app:app", port), env, log_dir)
            )
            worker = stack.enter_context(_spawn("celery", worker_argv, env, log_dir))
            _wait_listening(port, web)
            figures = _measure(
                f"http://127.0.0.1:{port}{PATH}",
                completions,
                (web, worker),
                n,
                concurrency,
                warmup,
                rate,
                [redis_pid],
            )
    finally:
        completions.close()
        client.flushdb()
        client.close()
        shutil.rmtree(log_dir, ignore_errors=True)
    return {
        "baseline": "celery",
        **figures,
        "config": f"celery pool={pool} c={workers} prefetch={prefetch}",
    }


def run_huey(
    n: int = 5000,
    concurrency: int = 64,
    *,
    workers: int = 1,
    worker_type: str = "thread",
    delay: float = 0.1,
    max_delay: float = 10.0,
    warmup: int = 500,
    rate: float | None = None,
) -> dict[str, Any]:
    """FastAPI + huey with SqliteHuey (default durability: WAL, synchronous=FULL) in a
    fresh temporary directory.

    Defaults: one worker thread and huey's own polling delays (0.1 s, backing off to 10 s).
    Shorter delays or more workers (threads or processes) contend with the endpoint for
    the SQLite write lock and the CPU, and lower end-to-end throughput.
    ``rate`` (requests/s) switches the load to an open loop.
    """
    tmp = Path(tempfile.mkdtemp(prefix="baseline-huey-"))
    huey_db = tmp / "huey.sqlite"
    done_db = tmp / "done.sqlite"
    completions = SqliteCompletions(str(done_db))
    completions.reset()
    env = _env({"BASELINE_HUEY_DB": str(huey_db), "BASELINE_HUEY_DONE_DB": str(done_db)})
    port = _free_port()
    options = (
        f"--workers {workers} --worker-type {worker_type} --delay {delay} "
        f"--max-delay {max_delay} --quiet"
    )
    consumer_argv = [
        sys.executable, "-m", "huey.bin.huey_consumer", "baseline_apps.huey_app.huey",
        *options.split(),
    ]  # fmt: skip
    try:
        with ExitStack() as stack:
            web = stack.enter_context(
                _spawn("uvicorn", _uvicorn_argv("baseline_apps.huey_app:app", port), env, tmp)
            )
            _wait_listening(port, web)
            worker = stack.enter_context(_spawn("huey", consumer_argv, env, tmp))
            figures = _measure(
                f"http://127.0.0.1:{port}{PATH}",
                completions,
                (web, worker),
                n,
                concurrency,
                warmup,
                rate,
            )
    finally:
        completions.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "baseline": "huey",
        **figures,
        "config": f"huey -k {worker_type} -w {workers} -d {delay} -m {max_delay}",
    }


_COLUMNS = [
    ("baseline", "baseline"),
    ("checkin_rps", "check-in req/s"),
    ("ack_p50_ms", "ack p50 ms"),
    ("ack_p99_ms", "ack p99 ms"),
    ("e2e_rps", "e2e tasks/s"),
    ("e2e_s", "e2e s"),
    ("drain_after_last_ack_s", "drain after last ack s"),
    ("other_cpu_pct", "other CPU %"),
]


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of the headline figures, followed by each run's configuration."""
    cells = [[h for _, h in _COLUMNS]] + [[str(r[k]) for k, _ in _COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    configs = dict.fromkeys(
        f"{r['baseline']}: {r['config']}, n={r['n']}, concurrency={r['concurrency']}"
        + (f", rate={r['rate']}/s" if r["rate"] else ", closed loop")
        for r in rows
    )
    lines += list(configs)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="FastAPI + Celery / huey end-to-end baselines")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--only", choices=["celery", "huey"])
    parser.add_argument(
        "--rate", type=float, default=None, help="open loop at this many requests/s"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per baseline")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each run, wait up to this long for the machine to be idle",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    runners: dict[str, Callable[..., dict[str, Any]]] = {"celery": run_celery, "huey": run_huey}
    rows = []
    for name, runner in runners.items():
        if args.only not in (None, name):
            continue
        for _ in range(args.repeat):
            if args.wait_idle > 0 and not wait_idle(args.wait_idle):
                print(
                    f"machine still busy after {args.wait_idle}s; running anyway", file=sys.stderr
                )
            rows.append(runner(args.n, args.concurrency, rate=args.rate))
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
