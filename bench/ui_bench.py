"""Dashboard page and operator API times with a million stored completions.

Fills a fresh SQLite database (or, with ``--postgres``, a new PostgreSQL
database) straight through the driver (``executemany``, or ``COPY``, in
chunks): completions spread over the last 30 days from a fleet of agents, one
run of a catch-all handler per completion and one of a flaky handler for half
of the job types, with their attempts and the dashboard's summaries. Then
signs in to the dashboard in-process (the app ``jobhooks serve`` runs, driven
through Starlette's TestClient) and times each page, then each operator API
endpoint that reads the same rows: p50, p95 and max over ``--repeat`` answers
after a warm-up.

With ``--store-checkins AGENTS`` it measures instead what the dashboard's
summaries cost the check-in: the store alone, in-process, storing reports
from that many agents in group commits of 64 (one run each) on top of 200,000
stored ones; run it with ``PYTHONPATH`` pointing at another checkout to
compare.

Usage: ``python bench/ui_bench.py [--completions 1000000] [--repeat 40] [--keep DIR]
[--postgres postgresql://postgres@127.0.0.1:5432/test]``
or ``python bench/ui_bench.py --store-checkins 200``
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

AGENTS = 200
JOB_TYPES = (
    "WinCertInventory",
    "PEMInventory",
    "PEMManagement",
    "JKSReenrollment",
    "SSL Monitoring",
    "SSL Discovery",
)
FLAKY_TYPES = JOB_TYPES[:3]
DAYS = 30
CHUNK = 20_000
MESSAGES = (
    "Access denied to store /etc/ssl/certs",
    "The remote server returned an error: (401) Unauthorized.",
    "Unable to connect to host: connection timed out",
    "Keystore was tampered with, or password was incorrect",
)
_VERSION = 0x7 << 76
_VARIANT = 0x2 << 62
_RANDOM_BITS = ((1 << 76) - 1) & ~(0x3 << 62)


def uuid7(millis: int, rng: random.Random) -> str:
    """A UUIDv7 for a given time (the store's ids sort by their time)."""
    value = (millis << 80) | _VERSION | _VARIANT | (rng.getrandbits(76) & _RANDOM_BITS)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def job_type_id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"jobhooks-bench/{name}"))


def write_config(folder: Path, database: str) -> Path:
    flaky = ", ".join(f'"{job_type_id(name)}"' for name in FLAKY_TYPES)
    names = "\n".join(f'"{name}" = "{job_type_id(name)}"' for name in JOB_TYPES)
    config = folder / "jobhooks.toml"
    config.write_text(
        f"""[server]
database = "{database}"

[job_types]
{names}

[[handlers]]
name = "log-everything"
type = "log"
job_types = "*"

[[handlers]]
name = "flaky-notifier"
type = "log"
job_types = [{flaky}]
max_attempts = 3
""",
        encoding="utf-8",
    )
    return config


COLUMNS = {
    "completions": (
        "id, received_at, source, agent_id, username, client_machine, job_id, job_type, "
        "job_type_id, operation_type, job_result, certificate_id, request_timestamp, "
        "current_retry_count, retry_count_computed, message, job_history_id, idempotency_key"
    ),
    "handler_runs": (
        "id, completion_id, handler, status, attempts, total_attempts, max_attempts, due_at, "
        "lease_until, worker, created_at, started_at, finished_at, duration, last_error"
    ),
    "run_attempts": (
        "run_id, number, worker, started_at, finished_at, duration, outcome, error, traceback"
    ),
    "completion_stats": "dimension, bucket, subject, job_result, shard, count",
    "agent_summary": (
        "id, client_machine, username, first_seen, last_seen, last_completion_id, "
        "completions, failures"
    ),
    "job_types": "id, name, origin, first_seen",
}


class Sink:
    """Bulk inserts straight through the driver: executemany on SQLite, COPY on PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.postgres = url.startswith("postgresql")
        if self.postgres:
            import psycopg

            self.connection: Any = psycopg.connect(url.replace("+psycopg", ""))
        else:
            self.connection = sqlite3.connect(url.removeprefix("sqlite:///"))
            self.connection.execute("PRAGMA synchronous=OFF")

    def insert(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        columns = COLUMNS[table]
        if not rows:
            return
        if self.postgres:
            cursor = self.connection.cursor()
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * (columns.count(",") + 1))
            self.connection.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)

    def commit(self) -> None:
        self.connection.commit()

    def close(self) -> None:
        if self.postgres:
            # What autovacuum does to a table at rest: without the visibility map set,
            # index-only scans (the dashboard's counts) visit the heap for every row.
            self.connection.commit()
            self.connection.autocommit = True
            self.connection.execute("VACUUM ANALYZE")
        else:
            self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.connection.close()


def fill(url: str, count: int, now: float, seed: int = 7) -> dict[str, Any]:
    """Insert ``count`` completions (with runs, attempts and summaries) over the last days."""
    from jobhooks.store.engine import connect
    from jobhooks.store.migrate import upgrade

    engine = connect(url)
    upgrade(engine)
    engine.dispose()
    rng = random.Random(seed)
    agents = [
        (str(uuid.UUID(int=rng.getrandbits(128), version=4)), f"orch{n:03d}.example.com")
        for n in range(AGENTS)
    ]
    jobs = [
        (str(uuid.UUID(int=rng.getrandbits(128), version=4)), rng.randrange(AGENTS), name)
        for _ in range(AGENTS * 10)
        for name in (rng.choice(JOB_TYPES),)
    ]
    sink = Sink(url)
    start = now - DAYS * 86400
    spacing = (now - 60 - start) / count
    stats: Counter[tuple[str, int, str, int]] = Counter()
    summary: dict[str, list[Any]] = {}
    completions: list[tuple[Any, ...]] = []
    runs: list[tuple[Any, ...]] = []
    attempts: list[tuple[Any, ...]] = []
    counts: Counter[str] = Counter()

    def flush() -> None:
        sink.insert("completions", completions)
        sink.insert("handler_runs", runs)
        sink.insert("run_attempts", attempts)
        sink.commit()
        completions.clear()
        runs.clear()
        attempts.clear()

    for index in range(count):
        received = start + index * spacing
        millis = int(received * 1000)
        job, agent_index, name = jobs[rng.randrange(len(jobs))]
        agent, machine = agents[agent_index]
        roll = rng.random()
        result = 4 if roll < 0.10 else 3 if roll < 0.15 else 2
        message = rng.choice(MESSAGES) if result == 4 else None
        completion_id = uuid7(millis, rng)
        type_id = job_type_id(name)
        completions.append(
            (
                completion_id,
                received,
                "check-in",
                agent,
                f"EXAMPLE\\svc-{machine[:7]}",
                machine,
                job,
                name,
                type_id,
                1,
                result,
                None,
                received - 5,
                0,
                False,
                message,
                None,
                None,
            )
        )
        stats[("all", int(received // 60) * 60, "", result)] += 1
        stats[("type", int(received // 3600) * 3600, type_id, result)] += 1
        stats[("agent", int(received // 3600) * 3600, agent, result)] += 1
        entry = summary.get(agent)
        if entry is None:
            entry = summary[agent] = [agent, machine, f"EXAMPLE\\svc-{machine[:7]}", received]
            entry += [received, completion_id, 0, 0]
        entry[4], entry[5] = received, completion_id
        entry[6] += 1
        entry[7] += result == 4
        handlers = ["log-everything"] + (["flaky-notifier"] if name in FLAKY_TYPES else [])
        for handler in handlers:
            run_id = uuid7(millis + 1, rng)
            recent = received > now - 120
            if handler == "flaky-notifier" and rng.random() < 0.2:
                tries = 3 if rng.random() < 0.1 else rng.randint(2, 3)
                status = "dead" if tries == 3 and rng.random() < 0.5 else "succeeded"
            else:
                tries, status = 1, "succeeded"
            if recent and rng.random() < 0.5:
                status, tries = "pending", 0
            error = None
            for number in range(1, tries + 1):
                began = received + 0.002 + (number - 1) * 10
                failed = number < tries or status == "dead"
                error = "ConnectionError: endpoint answered 503 Service Unavailable"
                attempts.append(
                    (
                        run_id,
                        number,
                        "bench:1",
                        began,
                        began + 0.004,
                        0.004,
                        "failed" if failed else "succeeded",
                        error if failed else None,
                        None,
                    )
                )
            finished = received + 0.006 + (tries - 1) * 10 if tries else None
            runs.append(
                (
                    run_id,
                    completion_id,
                    handler,
                    status,
                    tries,
                    tries,
                    3,
                    finished or received,
                    None,
                    None,
                    received,
                    finished - 0.004 if finished else None,
                    finished,
                    0.004 if finished else None,
                    error if status == "dead" else None,
                )
            )
            counts[status] += 1
        if len(completions) >= CHUNK:
            flush()
    flush()
    sink.insert("completion_stats", [(*key, 0, value) for key, value in stats.items()])
    sink.insert("agent_summary", [tuple(entry) for entry in summary.values()])
    sink.insert("job_types", [(job_type_id(name), name, "seen", start) for name in JOB_TYPES])
    sink.commit()
    sink.close()
    return {"runs": dict(counts)}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def time_pages(config: Path, repeat: int) -> list[dict[str, Any]]:
    """Sign in and time each page and API endpoint; returns one row per page."""
    import asyncio

    from jobhooks.registry import load
    from jobhooks.service.runtime import Runtime
    from jobhooks.store.engine import connect
    from jobhooks.web import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    runtime = Runtime(load(config), config, with_worker=False)
    admin, _ = asyncio.run(runtime.store.tokens.create("admin", None, "ui-bench"))
    engine = connect(runtime.database, pool_size=1)
    with engine.connect() as connection:
        sample = [
            row[0]
            for row in connection.exec_driver_sql(
                "SELECT id FROM completions ORDER BY id DESC LIMIT 200000"
            )
        ][::4000]
        agent, machine = connection.exec_driver_sql(
            "SELECT id, client_machine FROM agent_summary ORDER BY id LIMIT 1"
        ).one()
    engine.dispose()
    flaky = job_type_id(FLAKY_TYPES[0])
    pages = [
        ("overview (last day)", "/ui/"),
        ("overview (last week)", "/ui/?range=7d"),
        ("overview refresh (last hour)", "/ui/overview/live?range=1h"),
        ("completions, first page", "/ui/completions"),
        ("completions, failures", "/ui/completions?result=Failure"),
        ("completions, one agent", f"/ui/completions?agent={agent}"),
        (
            "completions, one machine + failures",
            f"/ui/completions?machine={machine}&result=Failure",
        ),
        ("completions, job type + failures", f"/ui/completions?job_type={flaky}&result=Failure"),
        ("completion detail", None),
        ("runs, dead", "/ui/runs?status=dead"),
        ("runs, one handler", "/ui/runs?handler=flaky-notifier"),
        ("handlers", "/ui/handlers"),
        ("job types", "/ui/job-types"),
        ("agents", "/ui/agents"),
        ("API completions, first page", "/api/v1/job-completions"),
        ("API completions, failures", "/api/v1/job-completions?result=Failure"),
        ("API completions, one agent", f"/api/v1/job-completions?agent_id={agent}"),
        ("API completion detail", "api-detail"),
        ("API handler runs, succeeded", "/api/v1/handler-runs?status=succeeded"),
        ("API handler runs, dead", "/api/v1/handler-runs?status=dead"),
        ("API handler runs, one handler", "/api/v1/handler-runs?handler=flaky-notifier"),
        ("API handlers", "/api/v1/handlers"),
        ("API job types", "/api/v1/job-types"),
    ]
    rows = []
    with TestClient(create_app(runtime), follow_redirects=False) as client:
        login = client.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
        assert csrf is not None
        signed = client.post("/ui/login", data={"csrf": csrf.group(1), "token": admin})
        assert signed.status_code == 303, signed.text
        for label, path in pages:
            times = []
            for index in range(repeat + 3):
                url = path or f"/ui/completions/{sample[index % len(sample)]}"
                headers = {}
                if url.startswith("/api/") or url == "api-detail":
                    headers["Authorization"] = f"Bearer {admin}"
                if url == "api-detail":
                    url = f"/api/v1/job-completions/{sample[index % len(sample)]}"
                began = time.perf_counter()
                response = client.get(url, headers=headers)
                took = time.perf_counter() - began
                assert response.status_code == 200, (url, response.status_code, response.text)
                if index >= 3:
                    times.append(took * 1000)
            rows.append(
                {
                    "page": label,
                    "p50_ms": round(statistics.median(times), 1),
                    "p95_ms": round(_percentile(times, 0.95), 1),
                    "max_ms": round(max(times), 1),
                    "bytes": len(response.content),
                }
            )
            print(
                f"{label:38} p50 {rows[-1]['p50_ms']:7.1f} ms  p95 {rows[-1]['p95_ms']:7.1f} ms  "
                f"max {rows[-1]['max_ms']:7.1f} ms",
                flush=True,
            )
    return rows


def store_checkins(agents: int, stored: int = 200_000, timed: int = 60_000) -> float:
    """Check-ins per second through the store alone (batches of 64, one run each)."""
    from jobhooks.sdk.context import parse_fields
    from jobhooks.store.checkins import insert_checkins
    from jobhooks.store.engine import connect
    from jobhooks.store.migrate import upgrade
    from jobhooks.store.records import NewCompletion, PlannedRun

    rng = random.Random(3)
    fleet = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(agents)]
    planned = (PlannedRun("log", 5, 60.0),)

    def report(index: int) -> NewCompletion:
        agent = fleet[index % agents]
        name = JOB_TYPES[index % len(JOB_TYPES)]
        fields, problems = parse_fields(
            {
                "agent_id": agent,
                "username": "EXAMPLE\\svc",
                "client_machine": f"orch-{agent[:8]}.example.com",
                "job_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "job_type": name,
                "job_type_id": job_type_id(name),
                "operation_type": "Inventory",
                "job_result": "Failure" if index % 10 == 0 else "Success",
                "current_retry_count": 0,
                "message": "Inventory of /etc/ssl/certs: access denied",
            }
        )
        assert not problems, problems
        fields["source"] = "check-in"
        return NewCompletion(fields, planned)

    folder = Path(tempfile.mkdtemp(prefix="jobhooks-store-bench-"))
    engine = connect(f"sqlite:///{folder / 'jobhooks.db'}")
    elapsed = 0.0
    try:
        upgrade(engine)
        for start in range(0, stored + timed, 10_000):
            batch = [report(i) for i in range(start, start + 10_000)]
            if start < stored:
                with engine.begin() as connection:
                    insert_checkins(connection, batch, time.time())
                continue
            began = time.perf_counter()
            for offset in range(0, len(batch), 64):
                with engine.begin() as connection:
                    insert_checkins(connection, batch[offset : offset + 64], time.time())
            elapsed += time.perf_counter() - began
        return timed / elapsed
    finally:
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def create_postgres_database(server: str) -> tuple[str, Callable[[], None]]:
    """A new database on ``server``; returns its URL and a function that drops it."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"jobhooks_ui_bench_{int(time.time())}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            admin.execute(f"DROP DATABASE IF EXISTS {name}")

    return make_url(server).set(database=name).render_as_string(hide_password=False), drop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--keep", type=Path, help="fill this folder once and reuse it")
    parser.add_argument("--budget-ms", type=float, default=150.0)
    parser.add_argument("--store-checkins", type=int, metavar="AGENTS")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run on a new database of this PostgreSQL server (postgresql://user@host/db)",
    )
    args = parser.parse_args(argv)
    if args.store_checkins:
        import jobhooks

        rates = [store_checkins(args.store_checkins) for _ in range(3)]
        print(
            f"store alone, {args.store_checkins} agents, batches of 64: "
            f"{statistics.median(rates):,.0f} check-ins/s (runs: "
            f"{', '.join(f'{rate:,.0f}' for rate in rates)}; {Path(jobhooks.__file__).parent})"
        )
        return 0
    folder = args.keep or Path(tempfile.mkdtemp(prefix="jobhooks-ui-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "jobhooks.db"
    url = f"sqlite:///{database}"
    dropped = None
    try:
        if args.postgres:
            url, dropped = create_postgres_database(args.postgres)
        config = write_config(folder, url)
        if args.postgres or not database.exists():
            began = time.perf_counter()
            filled = fill(url, args.completions, time.time())
            print(
                f"filled {args.completions:,} completions ({filled['runs']}) in "
                f"{time.perf_counter() - began:.0f} s on {url.split(':', 1)[0]}",
                flush=True,
            )
        rows = time_pages(config, args.repeat)
    finally:
        if dropped is not None:
            dropped()
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    name = "ui_bench_postgres.json" if args.postgres else "ui_bench.json"
    (results / name).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    slow = [row["page"] for row in rows if row["p95_ms"] > args.budget_ms]
    if slow:
        print(f"over the {args.budget_ms:g} ms p95 budget: {', '.join(slow)}")
        return 1
    print(f"every page under the {args.budget_ms:g} ms p95 budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
