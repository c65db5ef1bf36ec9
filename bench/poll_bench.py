"""Pull mode benchmarks against a platform served over HTTP on loopback.

* ``catchup``: ``--rows`` finished runs (default 100,000) wait in the platform's job
  history; the poller reads them page by page and stores every completion (and its
  handler run) on SQLite. Reported as rows/s, beside the rate at which a bare client
  can page through the same history (the platform's own limit). Goal >= 5,000 rows/s.
* ``steady``: the poller runs every ``--interval`` seconds; runs finish at random
  moments and the time until each is stored is measured. Goal: every one within
  ``interval + 1`` s.

The platform is the stand-in the test suite uses (``tests/support/keyfactor.py``),
served by a thread of this process over real HTTP.

Usage: ``python bench/poll_bench.py [--only catchup,steady] [--rows 100000]
[--page-size 500] [--interval 2] [--samples 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from support.keyfactor import (  # noqa: E402
    FakeKeyfactor,
    KeyfactorServer,
    platform_env,
    platform_toml,
)

from jobhooks.config.load import read_config  # noqa: E402
from jobhooks.intake import LeasePolicy, RunPlanner  # noqa: E402
from jobhooks.platform.client import PlatformClients, build_clients  # noqa: E402
from jobhooks.poll.poller import Poller  # noqa: E402
from jobhooks.poll.wiring import build_poller  # noqa: E402
from jobhooks.registry import LoadedConfig, load  # noqa: E402
from jobhooks.service.startup import serving_catalog  # noqa: E402
from jobhooks.store import Store  # noqa: E402

MACHINES = ["orch01", "orch02.example.com"]
JOB_TYPES = ["WinCertInventory", "WinCertManagement", "WinCertDiscovery", "RebootServer"]


def fill(fake: FakeKeyfactor, rows: int) -> None:
    """``rows`` finished runs over the last hour: recurring jobs, some retried."""
    rng = random.Random(7)
    jobs = [str(__import__("uuid").uuid4()) for _ in range(max(1, rows // 20))]
    begin = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    step = 3000.0 / rows
    for index in range(rows):
        result = rng.choices([2, 3, 4], weights=[85, 5, 10])[0]
        status = 5 if result == 4 and rng.random() < 0.5 else 3
        fake.add(
            result=result,
            status=status,
            message="Access denied" if result == 4 else "",
            machine=rng.choice(MACHINES),
            job_type=rng.choice(JOB_TYPES),
            job_id=rng.choice(jobs),
            at=begin + timedelta(seconds=index * step),
        )


def write_config(directory: Path, server: KeyfactorServer, page_size: int, interval: float) -> Path:
    config = directory / "jobhooks.toml"
    start = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    config.write_text(
        f'[server]\ndatabase = "sqlite:///{directory / "jobhooks.db"}"\n\n'
        + platform_toml(server)
        + f"\n[poll]\nenabled = true\ninterval = {interval}\npage_size = {page_size}\n"
        f'start = "{start}"\n' + '\n[[handlers]]\nname = "log"\ntype = "log"\njob_types = "*"\n',
        encoding="utf-8",
    )
    return config


async def page_through(server: KeyfactorServer, page_size: int) -> tuple[int, float]:
    """Rows/s a bare client reads the whole history at, keyset-paged (no storing)."""
    fake = server.fake
    headers = {"x-keyfactor-requested-with": "APIClient"}
    auth = httpx.BasicAuth(fake.username, fake.password)
    async with httpx.AsyncClient(base_url=server.url + "/", headers=headers, auth=auth) as client:
        began = time.perf_counter()
        last, total = 0, 0
        while True:
            response = await client.get(
                "OrchestratorJobs/JobHistory",
                params={
                    "pq.queryString": f'JobHistoryId -gt "{last}"',
                    "pq.sortField": "JobHistoryId",
                    "pq.sortAscending": 0,
                    "pq.returnLimit": page_size,
                },
            )
            rows = response.json()
            if not rows:
                break
            total += len(rows)
            last = rows[-1]["JobHistoryId"]
        return total, time.perf_counter() - began


def count(database: str, table: str) -> int:
    import sqlite3

    path = database.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


class Bench:
    """One fake platform and one jobhooks configuration pointing at it."""

    def __init__(self, rows: int, page_size: int, interval: float) -> None:
        self.fake = FakeKeyfactor(record=False, max_page=max(1000, page_size))
        self.server = KeyfactorServer(self.fake)
        os.environ.update(platform_env(self.fake))
        self.directory = Path(tempfile.mkdtemp(prefix="jobhooks-poll-bench-"))
        self.page_size = page_size
        began = time.perf_counter()
        fill(self.fake, rows)
        self.fill_seconds = time.perf_counter() - began
        self.config = write_config(self.directory, self.server, page_size, interval)
        self.database = f"sqlite:///{self.directory / 'jobhooks.db'}"
        self.loaded = asyncio.run(self._load())
        self.planner = RunPlanner(LeasePolicy(30.0))

    async def _load(self) -> LoadedConfig:
        """The configuration, names resolved from the platform's catalog as ``serve`` does."""
        parsed, _ = read_config(self.config)
        store = Store(self.database)
        try:
            return load(self.config, await serving_catalog(store, parsed))
        finally:
            store.close()

    def poller(self, store: Store, clients: PlatformClients) -> Poller:
        """A poller on ``store``, planning runs with the loaded registrations."""
        return build_poller(
            store,
            clients,
            self.loaded.config,
            lambda job_type_id: self.planner.plan(self.loaded.registry, job_type_id),
            node_id="bench",
        )

    def close(self) -> None:
        self.server.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    async def catch_up(self) -> dict[str, Any]:
        rows = len(self.fake.rows)
        paged, paging_seconds = await page_through(self.server, self.page_size)
        store = Store(self.database)
        clients = build_clients(self.loaded.config.platform)
        try:
            poller = self.poller(store, clients)
            assert await poller.acquire()
            began = time.perf_counter()
            report = await poller.poll_once()
            seconds = time.perf_counter() - began
            await poller.release()
        finally:
            await clients.aclose()
            store.close()
        stored = count(self.database, "completions")
        assert stored == rows == report.created, (stored, rows, report)
        return {
            "rows": rows,
            "page_size": self.page_size,
            "pages": report.pages,
            "seconds": round(seconds, 2),
            "rows_per_second": round(rows / seconds),
            "completions_stored": stored,
            "handler_runs_stored": count(self.database, "handler_runs"),
            "platform_paging_rows_per_second": round(paged / paging_seconds),
            "share_of_paging_rate": round((rows / seconds) / (paged / paging_seconds), 2),
        }

    async def steady(self, interval: float, samples: int) -> dict[str, Any]:
        store = Store(self.database)
        clients = build_clients(self.loaded.config.platform)
        latencies: list[float] = []
        try:
            poller = self.poller(store, clients)
            task = asyncio.create_task(poller.run())
            while poller.caught_up_at is None:
                await asyncio.sleep(0.05)
            rng = random.Random(11)
            for _ in range(samples):
                await asyncio.sleep(rng.uniform(0, interval))
                identifier = self.fake.add(result=4, message="steady state")
                added = time.perf_counter()
                while not await asyncio.to_thread(self._stored, identifier):
                    await asyncio.sleep(0.005)
                latencies.append(time.perf_counter() - added)
            await poller.stop()
            await task
        finally:
            await clients.aclose()
            store.close()
        ordered = sorted(latencies)
        return {
            "interval": interval,
            "samples": samples,
            "latency_p50": round(statistics.median(ordered), 3),
            "latency_max": round(ordered[-1], 3),
            "goal": interval + 1.0,
            "met": ordered[-1] <= interval + 1.0,
        }

    def _stored(self, identifier: int) -> bool:
        import sqlite3

        path = self.database.removeprefix("sqlite:///")
        with sqlite3.connect(path) as connection:
            row = connection.execute(
                "SELECT 1 FROM completions WHERE job_history_id = ?", (identifier,)
            ).fetchone()
        return row is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="catchup,steady")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    bench = Bench(args.rows, args.page_size, args.interval)
    results: dict[str, Any] = {"history_built_seconds": round(bench.fill_seconds, 1)}
    try:
        if "catchup" in chosen:
            results["catchup"] = asyncio.run(bench.catch_up())
            c = results["catchup"]
            print(
                f"catch-up: {c['rows']:,} rows in {c['seconds']} s = "
                f"{c['rows_per_second']:,} rows/s (goal >= 5,000) on SQLite, "
                f"{c['pages']} pages of {c['page_size']}; "
                f"a bare client pages the same history at {c['platform_paging_rows_per_second']:,} "
                f"rows/s ({c['share_of_paging_rate']:.0%} of it)",
                flush=True,
            )
        if "steady" in chosen:
            results["steady"] = asyncio.run(bench.steady(args.interval, args.samples))
            s = results["steady"]
            print(
                f"steady state: interval {s['interval']} s, {s['samples']} runs, "
                f"finished -> stored p50 {s['latency_p50']} s, max {s['latency_max']} s "
                f"(goal <= {s['goal']} s: "
                f"{'met' if s['met'] else 'MISSED'})",
                flush=True,
            )
    finally:
        bench.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
