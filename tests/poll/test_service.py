"""The poller inside a running jobhooks: outages, health, metrics, the lease, the catalog,
registrations by job type name and the ``acknowledge`` handler."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.app import TestClient
from support.clock import ManualClock
from support.handlers import read_lines
from support.keyfactor import MANAGEMENT_ID, FakeKeyfactor, Fault, RawRequest, past
from support.server import wait_for

from jobhooks.errors import LeaseLost
from jobhooks.intake import LeasePolicy, RunPlanner
from jobhooks.platform.client import build_clients
from jobhooks.poll.poller import TRUST_AGAIN
from jobhooks.poll.wiring import build_poller
from jobhooks.service.runtime import Runtime
from jobhooks.service.startup import open_runtime
from jobhooks.store import Store
from jobhooks.web import create_app

from .conftest import Platform, history_ids

FAILURE, SUCCESS = 4, 2


def runtime_for(config: Path) -> Runtime:
    """A runtime as ``serve`` builds it (the catalog synced before names are resolved)."""
    return open_runtime(config, with_worker=True)


class SlowAfterFaults:
    """A hook that holds ``count`` history answers for ``seconds``, once the platform's
    faults are over."""

    def __init__(self, faults: list[Fault], count: int, seconds: float) -> None:
        self.faults = faults
        self.count = count
        self.seconds = seconds
        self.lock = threading.Lock()

    def __call__(self, query: dict[str, str]) -> None:
        with self.lock:
            if self.faults or self.count <= 0:
                return
            self.count -= 1
        time.sleep(self.seconds)


def test_outages_back_off_are_logged_once_per_change_and_lose_nothing(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    fake = platform.fake
    config = platform.write_config(platform="timeout = 0.3\n")
    runtime = runtime_for(config)
    with (
        caplog.at_level(logging.INFO, logger="jobhooks.poll"),
        TestClient(create_app(runtime)) as client,
    ):

        def poll_state(expected: str) -> dict[str, Any] | None:
            body: dict[str, Any] = client.get("/readyz").json()
            return body if body["poll"]["state"] == expected else None

        wait_for(lambda: poll_state("ok"), 10, "the first poll")
        fake.faults.append(Fault(3, 500))
        fake.hooks.append(SlowAfterFaults(fake.faults, 1, 0.8))
        ids = [fake.add(result=FAILURE) for _ in range(5)]
        failing = wait_for(lambda: poll_state("failing"), 10, "the poller to fail")
        assert failing["status"] == "ok", "the platform never takes the API out of service"
        assert failing["poll"]["error_kind"] == "server_error"
        assert "answered 500" in failing["poll"]["error"]
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        wait_for(lambda: history_ids(platform.completions()) == ids, 20, "the rows after it")
        recovered = wait_for(lambda: poll_state("ok"), 10, "the poller to recover")
        assert recovered["poll"]["role"] == "polling"
        assert recovered["poll"]["lag_seconds"] < 5
        metrics = client.get("/metrics").text
    failures = [r.getMessage() for r in caplog.records if "cannot poll" in r.getMessage()]
    assert len(failures) == 2, failures  # 500s, then a timeout: one line per change
    assert "answered 500" in failures[0] and "timed out" in failures[1]
    assert sum("readable again" in r.getMessage() for r in caplog.records) == 1
    assert 'jobhooks_poll_errors_total{kind="server_error"} 3.0' in metrics
    assert 'jobhooks_poll_errors_total{kind="timeout"} 1.0' in metrics
    assert 'jobhooks_poll_completions_total{result="Failure"} 5.0' in metrics
    assert 'jobhooks_completions_total{result="Failure",source="poll"} 5.0' in metrics
    assert "jobhooks_poll_rows_read_total" in metrics
    assert "jobhooks_poll_lag_seconds" in metrics
    assert "jobhooks_poll_leader 1.0" in metrics


def test_a_new_finished_run_is_stored_within_an_interval(platform: Platform) -> None:
    fake = platform.fake
    config = platform.write_config(poll="interval = 0.5\n")
    runtime = runtime_for(config)
    with TestClient(create_app(runtime)) as client:
        wait_for(lambda: client.get("/readyz").json()["poll"]["state"] == "ok", 10, "polling")
        latencies = []
        for _ in range(3):
            added = time.monotonic()
            identifier = fake.add(result=FAILURE)
            wait_for(
                lambda identifier=identifier: identifier in history_ids(platform.completions()),
                5,
                "the completion",
                0.01,
            )
            latencies.append(time.monotonic() - added)
    assert max(latencies) < 0.5 + 1.0, latencies


def test_one_node_polls_and_a_node_that_lost_the_lease_writes_nothing(platform: Platform) -> None:
    fake = platform.fake
    config = platform.write_config(poll="lease = 1\n")
    database = platform.database(config)
    clock = ManualClock()

    async def scenario() -> tuple[bool, bool, int]:
        stores = [Store(database, clock=clock), Store(database, clock=clock)]
        loaded = await platform.load(config, stores[0])
        clients = [build_clients(loaded.config.platform) for _ in stores]
        planner = RunPlanner(LeasePolicy(1.0))
        try:
            first, second = (
                build_poller(
                    store,
                    c,
                    loaded.config,
                    lambda job_type_id: planner.plan(loaded.registry, job_type_id),
                    node_id=f"node-{i}",
                )
                for i, (store, c) in enumerate(zip(stores, clients, strict=True))
            )
            assert await first.acquire()
            await first.poll_once()
            second_while_held = await second.acquire()
            clock.advance(1.2)  # the first node stalls past its lease
            taken = await second.acquire()
            fake.add(result=FAILURE)
            with pytest.raises(LeaseLost):
                await first.poll_once()
            stored_by_stale = len(platform.completions())
            await second.poll_once()
            return second_while_held, taken, stored_by_stale
        finally:
            for c in clients:
                await c.aclose()
            for store in stores:
                store.close()

    second_while_held, taken, stored_by_stale = asyncio.run(scenario())
    assert not second_while_held
    assert taken
    assert stored_by_stale == 0
    assert len(platform.completions()) == 1


ACKNOWLEDGE_HANDLERS = """
[[handlers]]
name = "management"
type = "support.handlers:Appender"
job_types = ["WinCertManagement"]
properties = {{ path = "{directory}/management.log" }}

[[handlers]]
name = "ack"
type = "acknowledge"
job_types = "*"
"""


def test_registration_by_job_type_name_runs_for_the_right_rows_and_acknowledge_sends_the_id(
    platform: Platform,
) -> None:
    fake = platform.fake
    config = platform.write_config(handlers=ACKNOWLEDGE_HANDLERS)
    runtime = runtime_for(config)
    (management,) = [h for h in runtime.live.registry if h.name == "management"]
    assert management.job_types == (MANAGEMENT_ID,)
    with TestClient(create_app(runtime)) as client:
        wait_for(lambda: client.get("/readyz").json()["poll"]["state"] == "ok", 10, "polling")
        failed = fake.add(result=FAILURE, job_type="WinCertManagement")
        warned = fake.add(result=3, job_type="WinCertInventory")
        fake.add(result=SUCCESS, job_type="WinCertManagement")
        fake.add(result=SUCCESS, job_type="WinCertInventory")
        wait_for(lambda: len(fake.acknowledged) == 2, 10, "two acknowledgements")
        log = platform.directory / "management.log"
        wait_for(lambda: len(read_lines(log)) == 2, 10, "the management handler's runs")
    assert sorted(fake.acknowledged) == [failed, warned]
    acks = [s for s in fake.served if s.path.endswith("/OrchestratorJobs/Acknowledge")]
    assert sorted(json.loads(s.body)["JobAuditIds"] for s in acks) == [[failed], [warned]]
    completions = {c["id"]: c for c in platform.completions()}
    recorded = [completions[line.split()[0]]["job_type"] for line in read_lines(log)]
    assert recorded == ["WinCertManagement", "WinCertManagement"]


# -- a busy platform, and a capability it broke -------------------------------------


class BusyOnce:
    """A raw answer: the first job history request ``matches`` picks is answered ``status``
    with ``headers`` (then the stand-in answers as usual)."""

    def __init__(
        self,
        status: int,
        matches: Callable[[dict[str, str]], bool],
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        self.status = status
        self.matches = matches
        self.headers = headers or {}
        self.left = times

    def __call__(self, request: RawRequest) -> bool:
        if self.left <= 0 or not request.path.endswith("/JobHistory"):
            return False
        if not self.matches(request.query):
            return False
        self.left -= 1
        request.send_json(self.status, {"Message": "Service busy"}, self.headers)
        return True


def sorted_by_id(query: dict[str, str]) -> bool:
    return query.get("pq.sortField") == "JobHistoryId"


@pytest.mark.parametrize("status", [408, 429, 503])
def test_a_busy_answer_to_a_probe_decides_nothing_and_its_retry_after_is_the_next_wait(
    platform: Platform, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    fake = platform.fake
    finished = [fake.add(result=FAILURE, at=past(30)) for _ in range(3)]
    config = platform.write_config(poll=f'start = "{past(600).isoformat()}"')
    fake.raw_answers.append(BusyOnce(status, sorted_by_id, {"retry-after": "40"}))

    async def scenario() -> tuple[float, dict[str, Any], dict[str, Any]]:
        async with platform.poller(config) as poller:
            wait = await poller._step()
            failing = poller.status()
            await poller._step()
            return wait, failing, poller.status()

    with caplog.at_level(logging.INFO, logger="jobhooks.poll"):
        wait, failing, recovered = asyncio.run(scenario())
    assert wait == 40.0, "the platform's Retry-After is the next wait"
    assert failing["state"] == "failing" and failing["mode"] is None
    assert "the platform is busy" in failing["error"] and f"answered {status}" in failing["error"]
    assert "decided once it answers (will retry)" in failing["error"]
    logged = [r.getMessage() for r in caplog.records if "cannot poll" in r.getMessage()]
    assert len(logged) == 1 and "retrying in 40 s, as the platform asked" in logged[0]
    assert recovered["mode"] == "keyset", "the busy answer did not choose a weaker mode"
    assert recovered["state"] == "ok"
    assert history_ids(platform.completions()) == finished


@pytest.mark.parametrize(("header", "expected"), [("120", 120.0), ("3600", 600.0)])
def test_retry_after_on_a_page_sets_the_next_wait_up_to_ten_minutes(
    platform: Platform, header: str, expected: float
) -> None:
    fake = platform.fake
    config = platform.write_config()

    async def scenario() -> list[float]:
        async with platform.poller(config) as poller:
            await poller._step()
            fake.raw_answers.append(
                BusyOnce(503, lambda query: True, {"retry-after": header}, times=2)
            )
            return [await poller._step(), await poller._step(), await poller._step()]

    first, second, recovered = asyncio.run(scenario())
    assert (first, second) == (expected, expected)
    assert recovered == pytest.approx(0.1, abs=0.1), "the interval once it answers"


class StalePage:
    """Once armed, answers the next keyset page with the history's first page (as a
    caching proxy might): rows the poller has already passed."""

    def __init__(self, fake: FakeKeyfactor, page_size: int) -> None:
        self.fake = fake
        self.page_size = str(page_size)
        self.armed = False

    def __call__(self, request: RawRequest) -> bool:
        query = request.query
        if not (
            self.armed
            and request.path.endswith("/JobHistory")
            and query.get("pq.queryString", "").startswith("JobHistoryId -gt")
            and query.get("pq.returnLimit") == self.page_size
        ):
            return False
        self.armed = False
        status, rows = self.fake.history({**query, "pq.queryString": 'JobHistoryId -gt "0"'})
        request.send_json(status, rows)
        return True


def test_a_stale_page_costs_keyset_mode_for_an_hour_not_for_good(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    fake = platform.fake
    ids = [fake.add(result=FAILURE, at=past(30)) for _ in range(3)]
    config = platform.write_config(poll=f'start = "{past(600).isoformat()}"')
    stale = StalePage(fake, page_size=500)
    fake.raw_answers.append(stale)
    clock = ManualClock()

    async def scenario() -> list[str | None]:
        modes = []
        async with platform.poller(config, clock=clock) as poller:
            await poller._step()
            modes.append(poller.status()["mode"])
            ids.append(fake.add(result=FAILURE))
            stale.armed = True
            assert await poller._step() == 0.0, "the history is read another way at once"
            await poller._step()
            modes.append(poller.status()["mode"])
            ids.append(fake.add(result=SUCCESS))
            clock.advance(TRUST_AGAIN - 60)
            await poller._step()
            modes.append(poller.status()["mode"])
            ids.append(fake.add(result=FAILURE))
            clock.advance(61)
            await poller._step()
            modes.append(poller.status()["mode"])
        return modes

    with caplog.at_level(logging.INFO, logger="jobhooks.poll"):
        modes = asyncio.run(scenario())
    assert modes == ["keyset", "window", "window", "keyset"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "answered rows out of order" in m and "another way for the next 60 minutes" in m
        for m in messages
    ), messages
    back = [m for m in messages if "probed" in m and "again" in m]
    assert len(back) == 1, messages
    assert "60 minutes after it broke the JobHistoryId filter and sort" in back[0]
    assert "now read in mode keyset" in back[0]
    assert history_ids(platform.completions()) == ids, "each finished run exactly once"


def test_a_job_type_name_no_database_stores_does_not_keep_serve_from_starting(
    platform: Platform,
) -> None:
    """A store type whose ShortName holds half a surrogate pair (JSON "\\ud800") or a NUL
    (which PostgreSQL refuses): the catalog synced before serve starts must still be
    stored, and the check-in API must come up."""
    odd = "a1b2c3d4-0000-4a7b-8c9d-0e1f2a3b4c5e"
    platform.fake.store_types.append({"ShortName": "Odd\ud800\x00", "InventoryJobType": odd})
    config = platform.write_config()
    runtime = runtime_for(config)
    with TestClient(create_app(runtime)) as client:
        assert client.get("/readyz").status_code == 200
    store = Store(platform.database(config))
    try:
        names = asyncio.run(store.pull.catalog())
    finally:
        store.close()
    assert names["Odd\ufffd\ufffdInventory"] == uuid.UUID(odd)
    assert names["WinCertManagement"] == MANAGEMENT_ID

    # A run of that type is of that type, though its name is stored with U+FFFD for them.
    ran = platform.fake.add(job_type="Odd\ud800\x00Inventory")

    async def poll() -> None:
        async with platform.poller(config) as poller:
            await poller.poll_once()

    asyncio.run(poll())
    [stored] = [c for c in platform.completions() if c["job_history_id"] == ran]
    assert (stored["job_type"], stored["job_type_id"]) == ("Odd\ufffd\ufffdInventory", odd)
