"""jobhooks benchmarks, each against its baseline in the same run.

* ``checkin``: check-in throughput (durable 202s, 64 keep-alive clients) of an
  API-only node, divided by a raw Starlette JSON echo served with the same
  uvicorn settings, rounds alternated. Goal >= 0.5.
* ``e2e``: completions/s from the first request to the last no-op handler done,
  against FastAPI + Celery (Redis) and FastAPI + huey (SQLite) doing the same
  durable work. Goals: 10x Celery, 4x huey.
* ``latency``: dispatch latency (commit -> handler start) p50/p99 at a fixed
  1,000 completions/s. Goal p99 <= 50 ms.
* ``slow``: check-in p99 with a handler that sleeps 2 s, divided by check-in p99
  with no handler, at a fixed rate. Goal <= 1.2.

Usage: ``python bench/jobhooks_bench.py [--only checkin,e2e,latency,slow] [--n 5000]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from baselines import (  # noqa: E402
    _env,
    _free_port,
    _load,
    _measure,
    _Proc,
    _spawn,
    _uvicorn_argv,
    _wait_listening,
    make_bodies,
    run_celery,
    run_huey,
    wait_idle,
)

AGENT = "3b0c8f5e-6a1d-4c57-9f0e-2a7c1d9b4e21"
PATH = "/api/v1/job-completions"


class JobhooksCompletions:
    """Succeeded runs in a jobhooks SQLite database: how many, and when the last ended."""

    def __init__(self, database: Path) -> None:
        self._database = database
        self._base = 0

    def _query(self) -> tuple[int, float]:
        with sqlite3.connect(self._database, timeout=30) as connection:
            count, last = connection.execute(
                "SELECT count(*), max(finished_at) FROM handler_runs WHERE status = 'succeeded'"
            ).fetchone()
        return int(count), float(last or 0.0)

    def read(self) -> tuple[int, float]:
        count, last = self._query()
        return count - self._base, last

    def reset(self) -> None:
        self._base = self._query()[0]


def _config(folder: Path, port: int, handler: str | None) -> Path:
    lines = [
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        f'database = "sqlite:///{folder / "jobhooks.db"}"',
        "concurrency = 256",
    ]
    if handler:
        lines += [
            "[[handlers]]",
            f'name = "{handler.lower()}"',
            f'type = "bench_handlers:{handler}"',
            'job_types = "*"',
            "timeout = 30",
        ]
    path = folder / "jobhooks.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _jobhooks(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "jobhooks.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


@contextmanager
def jobhooks_server(
    handler: str | None, *, worker: bool = True
) -> Iterator[tuple[str, dict[str, str], Path, _Proc]]:
    """A ``jobhooks serve`` process on a fresh database; yields (url, headers, db, process)."""
    folder = Path(tempfile.mkdtemp(prefix="jobhooks-bench-"))
    port = _free_port()
    config = _config(folder, port, handler)
    env = _env({"JOBHOOKS_LOG_LEVEL": "WARNING"})
    token = _jobhooks("token", "create", "--agent", AGENT, "--config", str(config), env=env)
    argv = [sys.executable, "-m", "jobhooks.cli", "serve", "--config", str(config)]
    if not worker:
        argv.append("--no-worker")
    try:
        with _spawn("jobhooks", argv, env, folder) as proc:
            _wait_listening(port, proc)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            yield f"http://127.0.0.1:{port}{PATH}", headers, folder / "jobhooks.db", proc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def echo_server() -> Iterator[str]:
    """The raw Starlette echo app under uvicorn with jobhooks' server settings."""
    folder = Path(tempfile.mkdtemp(prefix="echo-bench-"))
    port = _free_port()
    try:
        with _spawn("echo", _uvicorn_argv("echo_app:app", port), _env({}), folder) as proc:
            _wait_listening(port, proc)
            yield f"http://127.0.0.1:{port}{PATH}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_checkin(n: int, concurrency: int, rounds: int) -> dict[str, Any]:
    """Check-in throughput of an API-only node over a raw Starlette echo, rounds alternated."""
    bodies = make_bodies(n)
    ours: list[float] = []
    echo: list[float] = []
    p99: list[float] = []
    with ExitStack() as stack:
        url, headers, _db, _proc = stack.enter_context(jobhooks_server("Noop", worker=False))
        echo_url = stack.enter_context(echo_server())
        _load(url, make_bodies(1000), concurrency, headers=headers)
        _load(echo_url, make_bodies(1000), concurrency)
        for _ in range(rounds):
            echo.append(_load(echo_url, bodies, concurrency).throughput)
            result = _load(url, make_bodies(n), concurrency, headers=headers)
            ours.append(result.throughput)
            p99.append(result.p99)
    ratio = statistics.median(ours) / statistics.median(echo)
    return {
        "jobhooks_rps": round(statistics.median(ours)),
        "echo_rps": round(statistics.median(echo)),
        "ratio": round(ratio, 2),
        "jobhooks_p99_ms": round(statistics.median(p99), 1),
        "rounds": rounds,
    }


def bench_e2e(n: int, concurrency: int) -> list[dict[str, Any]]:
    """End to end through a no-op handler, then the two baselines, same load."""
    with jobhooks_server("Noop") as (url, headers, database, proc):
        row = _measure(
            url, JobhooksCompletions(database), (proc,), n, concurrency, 500, None,
            headers=headers,
        )  # fmt: skip
    rows = [{"system": "jobhooks", **row}]
    rows.append({"system": "celery", **run_celery(n, concurrency)})
    rows.append({"system": "huey", **run_huey(n, concurrency)})
    return rows


def _dispatch_latencies(database: Path, since: float) -> list[float]:
    with sqlite3.connect(database, timeout=30) as connection:
        rows = connection.execute(
            "SELECT a.started_at - r.created_at FROM run_attempts a JOIN handler_runs r"
            " ON a.run_id = r.id WHERE a.number = 1 AND r.created_at >= ?",
            (since,),
        ).fetchall()
    return [max(0.0, value) * 1000 for (value,) in rows]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def bench_latency(rate: float, seconds: float) -> dict[str, Any]:
    """Dispatch latency at a fixed rate, from the database's own timestamps."""
    n = int(rate * seconds)
    with jobhooks_server("Noop") as (url, headers, database, _proc):
        _load(url, make_bodies(500), 32, headers=headers)
        completions = JobhooksCompletions(database)
        started = time.time()
        completions.reset()
        result = _load(url, make_bodies(n), 64, rate, headers)
        deadline = time.monotonic() + 60
        while completions.read()[0] < n and time.monotonic() < deadline:
            time.sleep(0.05)
        latencies = _dispatch_latencies(database, started)
    return {
        "rate": rate,
        "n": n,
        "dispatch_p50_ms": round(_percentile(latencies, 50), 2),
        "dispatch_p99_ms": round(_percentile(latencies, 99), 2),
        "checkin_p50_ms": round(result.p50, 2),
        "checkin_p99_ms": round(result.p99, 2),
    }


def bench_slow_handler(rate: float, seconds: float, rounds: int) -> dict[str, Any]:
    """Check-in p99 with a handler sleeping 2 s, over check-in p99 with no handler
    registered, at a fixed rate; rounds alternated, medians compared."""
    n = int(rate * seconds)
    figures: dict[str, list[float]] = {"none": [], "sleep": []}
    for _ in range(rounds):
        for label, handler in (("none", None), ("sleep", "Sleep")):
            with jobhooks_server(handler) as (url, headers, _database, _proc):
                _load(url, make_bodies(500), 32, headers=headers)
                figures[label].append(_load(url, make_bodies(n), 64, rate, headers).p99)
    baseline = statistics.median(figures["none"])
    slow = statistics.median(figures["sleep"])
    return {
        "rate": rate,
        "n": n,
        "rounds": rounds,
        "p99_no_handler_ms": round(baseline, 2),
        "p99_sleep_2s_ms": round(slow, 2),
        "ratio": round(slow / baseline, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="checkin,e2e,latency,slow")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wait-idle", type=float, default=60.0)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    wanted = set(args.only.split(","))
    if args.wait_idle and not wait_idle(args.wait_idle):
        print("warning: the machine did not go idle; figures may be disturbed", file=sys.stderr)
    report: dict[str, Any] = {}
    if "checkin" in wanted:
        report["checkin"] = bench_checkin(args.n * 2, args.concurrency, args.rounds)
    if "e2e" in wanted:
        rows = bench_e2e(args.n, args.concurrency)
        ours = rows[0]["e2e_rps"]
        for row in rows:
            row["jobhooks_over_this"] = round(ours / row["e2e_rps"], 2)
        report["e2e"] = rows
    if "latency" in wanted:
        report["latency"] = bench_latency(1000.0, 5.0)
    if "slow" in wanted:
        report["slow"] = bench_slow_handler(500.0, 10.0, args.rounds)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if "checkin" in report:
        c = report["checkin"]
        print(
            f"check-in: jobhooks {c['jobhooks_rps']}/s (p99 {c['jobhooks_p99_ms']} ms), "
            f"Starlette echo {c['echo_rps']}/s, ratio {c['ratio']} (goal >= 0.5)"
        )
    for row in report.get("e2e", []):
        print(
            f"e2e {row['system']:9s} {row['e2e_rps']:8.0f} completions/s, check-in "
            f"{row['checkin_rps']:8.0f}/s p99 {row['ack_p99_ms']:6.1f} ms; jobhooks / this = "
            f"{row['jobhooks_over_this']}"
        )
    if "latency" in report:
        lat = report["latency"]
        print(
            f"dispatch at {lat['rate']:.0f}/s: p50 {lat['dispatch_p50_ms']} ms, "
            f"p99 {lat['dispatch_p99_ms']} ms (goal <= 50); check-in p99 {lat['checkin_p99_ms']} ms"
        )
    if "slow" in report:
        slow = report["slow"]
        print(
            f"check-in p99 at {slow['rate']:.0f}/s: {slow['p99_sleep_2s_ms']} ms with a 2 s "
            f"handler, {slow['p99_no_handler_ms']} ms without; ratio {slow['ratio']} (goal <= 1.2)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
