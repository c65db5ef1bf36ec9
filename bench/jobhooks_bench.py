"""jobhooks benchmarks, each against its baseline in the same run.

* ``checkin``: check-in throughput (durable 202s, 64 keep-alive clients) of an
  API-only node, divided by a raw Starlette JSON echo served with the same
  uvicorn settings, rounds alternated. Goal >= 0.5.
* ``e2e``: completions/s from the first request to the last no-op handler done,
  with a synchronous handler (a plain function, as the baselines' tasks are) and
  an async one, against FastAPI + Celery (Redis) and FastAPI + huey (SQLite)
  doing the same durable work. Goals: 10x Celery, 4x huey, sync within 20% of
  async.
* ``latency``: dispatch latency (commit -> handler start) p50/p99 at a fixed
  1,000 completions/s. Goal p99 <= 50 ms.
* ``slow``: check-in p99 with a synchronous handler that sleeps 2 s, divided by
  check-in p99 with a synchronous no-op handler, at a fixed rate. Goal <= 1.2.
* ``rules``: check-in throughput of an API-only node with five registrations
  whose rules (``when``) are evaluated for every completion but never fire,
  over the same node with no registration: what evaluating rules costs (goal
  >= 0.9). Beside them, five registrations with rules that fire (first
  failure, streaks, recovered...) and five without rules. Reports of 499
  recurring jobs (a quarter fail), rounds alternated.
* ``digests``: a burst of 10,000 failures across 50 machines: check-in throughput
  of an API-only node with a registration grouping by ``client_machine`` over the
  same registration without ``group_by`` (goal >= 0.9); then, on a node with its
  worker, the digests created (goal: 50, one per machine) and the time from each
  digest's close to its handler's start (goal p99 <= 1 s).
* ``postgres``: check-in throughput on PostgreSQL over SQLite (API-only nodes),
  and runs drained per second by 2 worker processes over 1. Goal >= 1.7.

With ``--against SRC`` (another checkout's ``src`` folder), the check-in and
end-to-end figures of this tree and of that one instead, rounds alternated, so a
change can be held to "within 5%" on the same machine in the same run.

Usage: ``python bench/jobhooks_bench.py [--only checkin,e2e,latency,slow] [--n 5000]``
"""

from __future__ import annotations

import argparse
import json
import os
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
    make_burst,
    run_celery,
    run_huey,
    wait_idle,
)

AGENT = "3b0c8f5e-6a1d-4c57-9f0e-2a7c1d9b4e21"
PATH = "/api/v1/job-completions"


SUCCEEDED = "SELECT count(*), max(finished_at) FROM handler_runs WHERE status = 'succeeded'"


def _database_of(config: Path) -> str:
    text = config.read_text(encoding="utf-8")
    return text.split('database = "', 1)[1].split('"', 1)[0]


class JobhooksCompletions:
    """Succeeded runs in a jobhooks database: how many, and when the last ended."""

    def __init__(self, config: Path) -> None:
        self._database = _database_of(config)
        self._base = 0

    def _query(self) -> tuple[int, float]:
        if self._database.startswith("sqlite:///"):
            path = self._database.removeprefix("sqlite:///")
            with sqlite3.connect(path, timeout=30) as connection:
                count, last = connection.execute(SUCCEEDED).fetchone()
        else:
            import psycopg

            with psycopg.connect(self._database) as connection:
                count, last = connection.execute(SUCCEEDED).fetchone()  # type: ignore[misc]
        return int(count), float(last or 0.0)

    def read(self) -> tuple[int, float]:
        count, last = self._query()
        return count - self._base, last

    def reset(self) -> None:
        self._base = self._query()[0]


RULES = (
    'when = "first-failure"',
    'when = ["failure-streak", "recovered"]',
    'when = ["failure-streak", "still-failing", "recovered"]\nrepeat_every = "1h"',
    'when = "failure"',
    'when = "failure-streak"\nstreak = 2',
)
"""The ``when`` lines of the five registrations the ``rules`` benchmark registers."""


def _config(
    folder: Path,
    port: int,
    handler: str | None,
    database: str | None = None,
    registrations: tuple[str, ...] = (),
) -> Path:
    lines = [
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        f'database = "{database or "sqlite:///" + str(folder / "jobhooks.db")}"',
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
    for number, extra in enumerate(registrations):
        lines += [
            "[[handlers]]",
            f'name = "noop-{number}"',
            'type = "bench_handlers:Noop"',
            'job_types = "*"',
            extra,
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
    handler: str | None,
    *,
    worker: bool = True,
    database: str | None = None,
    registrations: tuple[str, ...] = (),
) -> Iterator[tuple[str, dict[str, str], Path, _Proc]]:
    """A ``jobhooks serve`` process on a fresh database; yields (url, headers, db, process).
    ``registrations`` adds no-op registrations for every job type, each with those lines."""
    folder = Path(tempfile.mkdtemp(prefix="jobhooks-bench-"))
    port = _free_port()
    config = _config(folder, port, handler, database, registrations)
    env = _env({"JOBHOOKS_LOG_LEVEL": "WARNING"})
    if database is not None:
        _jobhooks("db", "upgrade", "--config", str(config), env=env)
    token = _jobhooks("token", "create", "--agent", AGENT, "--config", str(config), env=env)
    argv = [sys.executable, "-m", "jobhooks.cli", "serve", "--config", str(config)]
    if not worker:
        argv.append("--no-worker")
    try:
        with _spawn("jobhooks", argv, env, folder) as proc:
            _wait_listening(port, proc)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            yield f"http://127.0.0.1:{port}{PATH}", headers, config, proc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def echo_server(one_write: bool = False) -> Iterator[tuple[str, int]]:
    """The raw Starlette echo app under uvicorn with jobhooks' server settings (``one_write``:
    and its HTTP protocol); yields its URL and process id."""
    folder = Path(tempfile.mkdtemp(prefix="echo-bench-"))
    port = _free_port()
    argv = _uvicorn_argv("echo_app:app", port)
    if one_write:
        argv = [sys.executable, str(BENCH_DIR / "echo_app.py"), str(port)]
    try:
        with _spawn("echo", argv, _env({}), folder) as proc:
            _wait_listening(port, proc)
            yield f"http://127.0.0.1:{port}{PATH}", proc.popen.pid
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
        echo_url, _pid = stack.enter_context(echo_server())
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


def bench_rules(n: int, concurrency: int, rounds: int) -> dict[str, Any]:
    """Check-in throughput (API-only) with five rule registrations, five plain ones and
    none, on the same recurring jobs, rounds alternated; medians and ratios to none."""
    setups: dict[str, tuple[str, ...]] = {
        "none": (),
        "always": ("",) * len(RULES),
        "rules": RULES,
        # Rules that never fire here: what evaluating them costs, with no run to store.
        "silent": ('when = "failure-streak"\nstreak = 1000',) * len(RULES),
    }
    figures: dict[str, list[float]] = {label: [] for label in setups}
    for _ in range(rounds):
        for label, registrations in setups.items():
            with jobhooks_server(None, worker=False, registrations=registrations) as (
                url, headers, _db, _proc,
            ):  # fmt: skip
                _load(url, make_bodies(1000, jobs=499), concurrency, headers=headers)
                result = _load(url, make_bodies(n, jobs=499), concurrency, headers=headers)
                figures[label].append(result.throughput)
    medians = {label: statistics.median(values) for label, values in figures.items()}
    return {
        "rounds": rounds,
        "none_rps": round(medians["none"]),
        "always_rps": round(medians["always"]),
        "rules_rps": round(medians["rules"]),
        "silent_rps": round(medians["silent"]),
        "rules_over_none": round(medians["rules"] / medians["none"], 3),
        "silent_over_none": round(medians["silent"] / medians["none"], 3),
        "rules_over_always": round(medians["rules"] / medians["always"], 3),
        "always_over_none": round(medians["always"] / medians["none"], 3),
        "rounds_rps": {label: [round(x) for x in values] for label, values in figures.items()},
    }


DIGEST_WAIT = 10.0
"""The ``digests`` benchmark's group_wait: longer than the burst takes to arrive."""
GROUPED = (
    f'when = "failure"\ngroup_by = ["client_machine"]\ngroup_wait = "{DIGEST_WAIT:g}s"\n'
    "group_max = 1000"
)
DIGEST_LATENCY = (
    "SELECT a.started_at - (r.created_at + ?) FROM handler_runs r JOIN run_attempts a "
    "ON a.run_id = r.id AND a.number = 1 WHERE r.group_key IS NOT NULL"
)
DIGEST_RUNS = (
    "SELECT count(*), sum(status = 'succeeded') FROM handler_runs WHERE group_key IS NOT NULL"
)


def bench_digests(n: int, machines: int, concurrency: int, rounds: int) -> dict[str, Any]:
    """Check-in throughput of a burst with and without group_by (API-only, rounds
    alternated); then the digests one node creates for it and their close -> start times."""
    figures: dict[str, list[float]] = {"plain": [], "grouped": []}
    for _ in range(rounds):
        for label, lines in (("plain", 'when = "failure"'), ("grouped", GROUPED)):
            with jobhooks_server(None, worker=False, registrations=(lines,)) as (
                url, headers, _db, _proc,
            ):  # fmt: skip
                _load(url, make_burst(1000, machines), concurrency, headers=headers)
                result = _load(url, make_burst(n, machines), concurrency, headers=headers)
                figures[label].append(result.throughput)
    with jobhooks_server(None, registrations=(GROUPED,)) as (url, headers, config, _proc):
        _load(url, make_burst(n, machines), concurrency, headers=headers)
        database = _database_of(config).removeprefix("sqlite:///")
        deadline = time.monotonic() + DIGEST_WAIT + 60
        while time.monotonic() < deadline:
            with sqlite3.connect(database, timeout=30) as connection:
                created, done = connection.execute(DIGEST_RUNS).fetchone()
            if created and created == done:
                break
            time.sleep(0.2)
        with sqlite3.connect(database, timeout=30) as connection:
            latencies = [row[0] for row in connection.execute(DIGEST_LATENCY, (DIGEST_WAIT,))]
    plain, grouped = (statistics.median(figures[k]) for k in ("plain", "grouped"))
    return {
        "n": n,
        "machines": machines,
        "rounds": rounds,
        "plain_rps": round(plain),
        "grouped_rps": round(grouped),
        "ratio": round(grouped / plain, 3),
        "digests": created,
        "close_to_start_p50_ms": round(_percentile(latencies, 50) * 1000, 1),
        "close_to_start_p99_ms": round(_percentile(latencies, 99) * 1000, 1),
        "rounds_rps": {k: [round(x) for x in v] for k, v in figures.items()},
    }


def bench_e2e(n: int, concurrency: int) -> list[dict[str, Any]]:
    """End to end through a synchronous no-op handler (a plain function, as the baselines'
    tasks are) and an async one, then the two baselines, same load."""
    rows = []
    for system, handler in (("jobhooks", "SyncNoop"), ("jobhooks-async", "Noop")):
        with jobhooks_server(handler) as (url, headers, database, proc):
            row = _measure(
                url, JobhooksCompletions(database), (proc,), n, concurrency, 500, None,
                headers=headers,
            )  # fmt: skip
        rows.append({"system": system, **row})
    rows.append({"system": "celery", **run_celery(n, concurrency)})
    rows.append({"system": "huey", **run_huey(n, concurrency)})
    return rows


@contextmanager
def source_tree(src: str | None) -> Iterator[None]:
    """Run the jobhooks processes started inside from ``src`` (None: this tree)."""
    before = os.environ.get("PYTHONPATH")
    if src is not None:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [src, before]))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def bench_against(src: str, n: int, concurrency: int, rounds: int) -> dict[str, Any]:
    """Check-in throughput (API-only) and end to end (synchronous no-op handler) of this
    tree and of ``src``, alternated ``rounds`` times; medians and this tree's ratio to the
    other."""
    figures: dict[str, dict[str, list[float]]] = {
        tree: {"checkin": [], "e2e": []} for tree in ("this", "other")
    }
    for _ in range(rounds):
        for tree, path in (("other", src), ("this", None)):
            with source_tree(path):
                with jobhooks_server("Noop", worker=False) as (url, headers, _db, _proc):
                    _load(url, make_bodies(1000), concurrency, headers=headers)
                    result = _load(url, make_bodies(n * 2), concurrency, headers=headers)
                    figures[tree]["checkin"].append(result.throughput)
                with jobhooks_server("SyncNoop") as (url, headers, database, proc):
                    row = _measure(
                        url, JobhooksCompletions(database), (proc,), n, concurrency, 500,
                        None, headers=headers,
                    )  # fmt: skip
                    figures[tree]["e2e"].append(row["e2e_rps"])
    report: dict[str, Any] = {"against": src, "rounds": rounds}
    for kind in ("checkin", "e2e"):
        this = statistics.median(figures["this"][kind])
        other = statistics.median(figures["other"][kind])
        report[kind] = {
            "this_rps": round(this),
            "other_rps": round(other),
            "ratio": round(this / other, 3),
            "this_rounds": [round(x) for x in figures["this"][kind]],
            "other_rounds": [round(x) for x in figures["other"][kind]],
        }
    return report


def _dispatch_latencies(config: Path, since: float) -> list[float]:
    database = _database_of(config).removeprefix("sqlite:///")
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
    """Check-in p99 with a synchronous handler sleeping 2 s, over check-in p99 with a
    synchronous no-op handler (and with none registered), at a fixed rate; rounds
    alternated, medians compared."""
    n = int(rate * seconds)
    setups = {"none": None, "noop": "SyncNoop", "sleep": "SyncSleep"}
    figures: dict[str, list[float]] = {label: [] for label in setups}
    for _ in range(rounds):
        for label, handler in setups.items():
            with jobhooks_server(handler) as (url, headers, _database, _proc):
                _load(url, make_bodies(500), 32, headers=headers)
                figures[label].append(_load(url, make_bodies(n), 64, rate, headers).p99)
    none, noop, slow = (statistics.median(figures[k]) for k in setups)
    return {
        "rate": rate,
        "n": n,
        "rounds": rounds,
        "p99_no_handler_ms": round(none, 2),
        "p99_noop_ms": round(noop, 2),
        "p99_sleep_2s_ms": round(slow, 2),
        "ratio": round(slow / noop, 2),
    }


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one measurement, dropped afterwards."""
    import psycopg

    name = f"jobhooks_bench_{int(time.time() * 1000)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            admin.execute(f"DROP DATABASE IF EXISTS {name}")


def bench_postgres_checkin(n: int, concurrency: int, rounds: int) -> dict[str, Any]:
    """Check-in throughput of an API-only node on PostgreSQL over the same on SQLite."""
    figures: dict[str, list[float]] = {"postgres": [], "sqlite": []}
    with ExitStack() as stack:
        database = stack.enter_context(postgres_database())
        pg = stack.enter_context(jobhooks_server("Noop", worker=False, database=database))
        lite = stack.enter_context(jobhooks_server("Noop", worker=False))
        for url, headers, _config_path, _proc in (pg, lite):
            _load(url, make_bodies(1000), concurrency, headers=headers)
        for _ in range(rounds):
            for label, (url, headers, _config_path, _proc) in (("postgres", pg), ("sqlite", lite)):
                figures[label].append(
                    _load(url, make_bodies(n), concurrency, headers=headers).throughput
                )
    postgres, sqlite = statistics.median(figures["postgres"]), statistics.median(figures["sqlite"])
    return {"postgres_rps": round(postgres), "sqlite_rps": round(sqlite),
            "ratio": round(postgres / sqlite, 2)}  # fmt: skip


def _postgres_one(database: str, query: str) -> Any:
    import psycopg

    with psycopg.connect(database) as connection:
        return connection.execute(query).fetchone()  # type: ignore[arg-type]


def bench_postgres_workers(n: int) -> dict[str, Any]:
    """Runs drained per second by 1 and by 2 worker processes on PostgreSQL: ``n``
    completions are stored first (API node, no worker), then the workers start."""
    rates: dict[int, float] = {}
    for workers in (1, 2):
        with ExitStack() as stack:
            database = stack.enter_context(postgres_database())
            url, headers, config, api = stack.enter_context(
                jobhooks_server("Noop", worker=False, database=database)
            )
            _load(url, make_bodies(n), 64, headers=headers)
            completions = JobhooksCompletions(config)
            env = _env({"JOBHOOKS_LOG_LEVEL": "WARNING"})
            argv = [sys.executable, "-m", "jobhooks.cli", "worker", "--config", str(config)]
            procs = [
                stack.enter_context(_spawn(f"worker{i}", argv, env, config.parent))
                for i in range(workers)
            ]
            deadline = time.monotonic() + 180
            while completions.read()[0] < n and time.monotonic() < deadline:
                for proc in (api, *procs):
                    proc.check_alive()
                time.sleep(0.05)
            # From the first claim to the last finish: worker start-up is not counted.
            first, last = _postgres_one(
                database, "SELECT min(started_at), max(finished_at) FROM run_attempts"
            )
            rates[workers] = n / (last - first)
    return {"n": n, "one_worker_rps": round(rates[1]), "two_workers_rps": round(rates[2]),
            "ratio": round(rates[2] / rates[1], 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="checkin,e2e,latency,slow,rules,digests,postgres")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wait-idle", type=float, default=60.0)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument(
        "--against",
        metavar="SRC",
        help="compare check-in and e2e with another checkout's src folder instead",
    )
    args = parser.parse_args(argv)
    wanted = set(args.only.split(","))
    if args.wait_idle and not wait_idle(args.wait_idle):
        print("warning: the machine did not go idle; figures may be disturbed", file=sys.stderr)
    if args.against:
        compared = bench_against(args.against, args.n, args.concurrency, args.rounds)
        print(json.dumps(compared, indent=2))
        return 0
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
    if "rules" in wanted:
        report["rules"] = bench_rules(args.n * 2, args.concurrency, args.rounds)
    if "digests" in wanted:
        report["digests"] = bench_digests(args.n * 2, 50, args.concurrency, args.rounds)
    if "postgres" in wanted:
        report["postgres_checkin"] = bench_postgres_checkin(
            args.n * 2, args.concurrency, args.rounds
        )
        report["postgres_workers"] = bench_postgres_workers(args.n * 2)
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
            f"e2e {row['system']:14s} {row['e2e_rps']:8.0f} completions/s, check-in "
            f"{row['checkin_rps']:8.0f}/s p99 {row['ack_p99_ms']:6.1f} ms; jobhooks sync / this = "
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
            f"check-in p99 at {slow['rate']:.0f}/s: {slow['p99_sleep_2s_ms']} ms with a sync "
            f"handler sleeping 2 s, {slow['p99_noop_ms']} ms with a sync no-op, "
            f"{slow['p99_no_handler_ms']} ms with none; ratio {slow['ratio']} (goal <= 1.2)"
        )
    if "rules" in report:
        r = report["rules"]
        print(
            f"check-in with five rule registrations {r['rules_rps']}/s, five whose rules never "
            f"fire {r['silent_rps']}/s, five without rules {r['always_rps']}/s, none "
            f"{r['none_rps']}/s: evaluating rules (never firing / none) "
            f"{r['silent_over_none']} (goal >= 0.9); rules / without rules "
            f"{r['rules_over_always']}; rules / none {r['rules_over_none']}"
        )
    if "digests" in report:
        d = report["digests"]
        print(
            f"burst of {d['n']} failures on {d['machines']} machines: check-in grouped "
            f"{d['grouped_rps']}/s, ungrouped {d['plain_rps']}/s, ratio {d['ratio']} "
            f"(goal >= 0.9); {d['digests']} digests (goal {d['machines']}); close -> start "
            f"p50 {d['close_to_start_p50_ms']} ms, p99 {d['close_to_start_p99_ms']} ms "
            "(goal <= 1000)"
        )
    if "postgres_checkin" in report:
        pc, pw = report["postgres_checkin"], report["postgres_workers"]
        print(
            f"PostgreSQL check-in {pc['postgres_rps']}/s vs SQLite {pc['sqlite_rps']}/s: "
            f"ratio {pc['ratio']}"
        )
        print(
            f"PostgreSQL workers draining {pw['n']} runs: 1 worker {pw['one_worker_rps']}/s, "
            f"2 workers {pw['two_workers_rps']}/s: ratio {pw['ratio']} (goal >= 1.7)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
