"""Finished runs become completions exactly once, whatever the history and the platform do.

Each test drives a poller in this process against the loopback platform.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from support.keyfactor import (
    AGENT_1,
    AGENT_2,
    CUSTOM_ID,
    HISTORY,
    INVENTORY_ID,
    MANAGEMENT_ID,
    past,
)

from jobhooks.errors import PlatformAuthError, PlatformError
from jobhooks.poll import cycle
from jobhooks.poll.rows import NIL

from .conftest import Platform, history_ids

FAILURE, SUCCESS, WARNING = 4, 2, 3
COMPLETED, ACKNOWLEDGED, WILL_RETRY = 3, 4, 5


def by_id(items: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {item["job_history_id"]: item for item in items}


@pytest.mark.parametrize("enums", ["names", "ints"])
def test_each_finished_run_becomes_one_completion_with_its_context(
    platform: Platform, enums: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake = platform.fake
    fake.enums = enums
    before = fake.add(result=FAILURE, at=past(120))
    config = platform.write_config()
    job = uuid.uuid4()
    ids: dict[str, int] = {}
    created: list[int] = []

    async def scenario() -> None:
        async with platform.poller(config) as poller:
            created.append((await poller.poll_once()).created)
            ids["ok"] = fake.add(
                result=SUCCESS, machine="orch02.example.com", job_type="WinCertManagement"
            )
            ids["first"] = fake.add(
                result=FAILURE, status=WILL_RETRY, job_id=job, message="Access denied"
            )
            ids["running"] = fake.start_run(job_type="RebootServer")
            ids["unknown"] = fake.add(result=WARNING, machine="ghost", job_type="MysteryJob")
            created.append((await poller.poll_once()).created)
            ids["second"] = fake.add(result=FAILURE, status=WILL_RETRY, job_id=job)
            fake.acknowledge(ids["first"])  # 5 -> 4 after it was seen as 5
            created.append((await poller.poll_once()).created)
            ids["last"] = fake.add(result=SUCCESS, job_id=job)
            fake.finish(ids["running"], result=FAILURE, message="reboot failed")
            ids["acked"] = fake.add(result=FAILURE, status=ACKNOWLEDGED)
            created.append((await poller.poll_once()).created)
            created.append((await poller.poll_once()).created)

    with caplog.at_level(logging.WARNING, logger="jobhooks.poll"):
        asyncio.run(scenario())
    assert created == [0, 3, 1, 3, 0], "a running row is emitted once it finishes, not before"
    stored = platform.completions()
    assert history_ids(stored) == sorted(ids.values())
    assert before not in history_ids(stored), "ended before start = now"
    rows = by_id(stored)
    ok = rows[ids["ok"]]
    assert (ok["agent_id"], ok["username"], ok["client_machine"]) == (
        str(AGENT_2),
        "DOMAIN\\orch02",
        "orch02.example.com",
    )
    assert (ok["job_type"], ok["job_type_id"], ok["job_result"]) == (
        "WinCertManagement",
        str(MANAGEMENT_ID),
        SUCCESS,
    )
    first = rows[ids["first"]]
    assert first["agent_id"] == str(AGENT_1), "the approved agent on orch01, not the old one"
    assert first["username"] == "DOMAIN\\orch01"
    assert (first["job_type_id"], first["message"]) == (str(INVENTORY_ID), "Access denied")
    assert first["job_id"] == str(job)
    assert [rows[ids[n]]["current_retry_count"] for n in ("first", "second", "last")] == [0, 1, 2]
    assert rows[ids["running"]]["job_type_id"] == str(CUSTOM_ID)
    assert rows[ids["running"]]["message"] == "reboot failed"
    unknown = rows[ids["unknown"]]
    assert (unknown["agent_id"], unknown["job_type_id"], unknown["username"]) == (
        str(NIL),
        str(NIL),
        "",
    )
    assert rows[ids["acked"]]["job_result"] == FAILURE
    for item in stored:
        assert item["source"] == "poll"
        assert item["operation_type"] == 0
        assert item["certificate_id"] is None
        assert item["request_timestamp"] is not None
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("'ghost'" in w for w in warnings) == 1
    assert sum("'MysteryJob'" in w for w in warnings) == 1


def test_pages_while_rows_arrive_and_long_runs_finish_late(platform: Platform) -> None:
    fake = platform.fake
    config = platform.write_config(poll="page_size = 3")
    expected: list[int] = []
    requests = Counter[str]()
    long_runs: list[int] = []

    def during_the_poll(query: dict[str, str]) -> None:
        if "JobHistoryId -gt" not in query.get("pq.queryString", ""):
            return
        requests["keyset"] += 1
        if requests["keyset"] == 2:
            expected.extend(fake.add(result=FAILURE) for _ in range(4))
            long_runs.append(fake.start_run())
        if requests["keyset"] == 4:
            fake.finish(long_runs[0], result=FAILURE)
            expected.append(long_runs[0])

    async def scenario() -> None:
        async with platform.poller(config) as poller:
            await poller.poll_once()
            long_runs.insert(0, fake.start_run())
            expected.extend(fake.add(result=SUCCESS) for _ in range(8))
            fake.hooks.append(during_the_poll)
            await poller.poll_once()
            await poller.poll_once()
            fake.finish(long_runs[1], result=SUCCESS)
            expected.append(long_runs[1])
            await poller.poll_once()

    asyncio.run(scenario())
    assert history_ids(platform.completions()) == sorted(expected)
    assert len(expected) == 14


def test_a_run_that_outlives_many_pages_is_fetched_on_its_own(platform: Platform) -> None:
    fake = platform.fake
    config = platform.write_config(poll="page_size = 2")

    async def scenario() -> list[int]:
        async with platform.poller(config) as poller:
            await poller.poll_once()
            straggler = fake.start_run()
            done = [fake.add() for _ in range(20)]
            await poller.poll_once()
            fake.finish(straggler, result=FAILURE)
            deleted = fake.start_run()
            await poller.poll_once()
            fake.delete(deleted)
            done += [fake.add() for _ in range(10)]
            await poller.poll_once()
            return sorted([*done, straggler])

    expected = asyncio.run(scenario())
    assert history_ids(platform.completions()) == expected
    straggler = expected[0]
    asked = [s.query.get("pq.queryString") for s in fake.history_requests()]
    assert f'JobHistoryId -gt "{straggler - 1}"' in asked, "asked for on its own"


def test_start_at_a_past_time(platform: Platform) -> None:
    fake = platform.fake
    for _ in range(40):
        fake.add(at=past(7200))
    before = fake.add(result=FAILURE, at=past(3600))
    after = [fake.add(result=FAILURE, at=past(600)) for _ in range(3)]
    ran_across = fake.start_run(at=past(3000))
    fake.finish(ran_across, at=past(300))
    start = past(1800).isoformat() + "Z"
    config = platform.write_config(poll=f'start = "{start}"')

    async def scenario() -> None:
        async with platform.poller(config) as poller:
            await poller.poll_once()

    asyncio.run(scenario())
    ids = history_ids(platform.completions())
    assert ids == sorted([*after, ran_across])
    assert before not in ids


def test_runs_that_ended_after_polling_was_set_up_are_kept_when_the_first_poll_comes_late(
    platform: Platform,
) -> None:
    """A node can take the lease and stop before its first poll; the history is read from
    when polling was set up, not from whenever a node first polls."""
    fake = platform.fake
    config = platform.write_config()
    ended: list[int] = []

    async def scenario() -> None:
        async with platform.poller(config) as poller:
            ended.append(fake.add(result=FAILURE))
            fake.clock_ahead = 30.0  # the first poll comes half a minute later
            await poller.poll_once()

    asyncio.run(scenario())
    assert history_ids(platform.completions()) == ended


def test_a_malformed_row_is_logged_counted_and_the_rows_after_it_still_come(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    fake = platform.fake
    config = platform.write_config()

    async def scenario() -> tuple[list[int], list[int]]:
        async with platform.poller(config) as poller:
            await poller.poll_once()
            good = [fake.add(result=FAILURE)]
            fake.add_raw({"JobHistoryId": None, "JobId": "junk"})  # nothing identifies it
            fake.add_raw({"JobHistoryId": "²", "JobId": "junk"})  # a digit int() refuses
            worse = fake.add_raw({})
            fake.rows[worse].raw = {"JobHistoryId": worse, "JobId": "not-a-guid", "Status": 3}
            good.append(fake.add(result=FAILURE))
            reports = [await poller.poll_once(), await poller.poll_once()]
            return good, [worse, reports[0].malformed, reports[1].malformed]

    with caplog.at_level(logging.WARNING, logger="jobhooks.poll"):
        good, (worse, first, second) = asyncio.run(scenario())
    assert history_ids(platform.completions()) == good
    assert (first, second) == (1, 0), "recorded once, not logged at every poll"
    messages = [r.getMessage() for r in caplog.records]
    assert sum(f"job history row {worse} is malformed" in m for m in messages) == 1
    assert any("JobHistoryId is missing" in m for m in messages)


def test_a_strict_platform_is_read_through_the_documented_fields(platform: Platform) -> None:
    """JobHistoryId is neither a query nor a sort field there (400), pages hold at most 7
    rows, its default order is newest first, times take one format, and rows are added
    and deleted between pages: offsets shift under the poller."""
    fake = platform.fake
    fake.strict, fake.max_page, fake.default_order = True, 7, "id_desc"
    old = [fake.add(at=past(4000 + i)) for i in range(25)]
    config = platform.write_config(poll="page_size = 50")
    expected: list[int] = []
    served = Counter[str]()

    def shift_pages(query: dict[str, str]) -> None:
        if "OperationStart -ge" not in query.get("pq.queryString", ""):
            return
        served["window"] += 1
        if served["window"] % 3 == 0 and old:
            fake.delete(old.pop())
        if served["window"] % 4 == 0:
            expected.append(fake.add(result=FAILURE))

    async def scenario() -> str:
        async with platform.poller(config) as poller:
            await poller.poll_once()
            expected.extend(fake.add(result=SUCCESS) for _ in range(30))
            fake.hooks.append(shift_pages)
            for _ in range(4):
                await poller.poll_once()
            fake.hooks.clear()
            await poller.poll_once()
            return poller.caps.mode if poller.caps else ""

    mode = asyncio.run(scenario())
    assert mode == "window"
    ids = history_ids(platform.completions())
    assert len(ids) == len(set(ids)), "none twice"
    assert sorted(ids) == sorted(expected), "none missed"
    refused = [s for s in fake.history_requests() if s.status == 400]
    assert any("JobHistoryId" in str(s.query) for s in refused)


def test_a_platform_without_a_usable_filter_is_read_whole(platform: Platform) -> None:
    fake = platform.fake
    fake.strict, fake.max_page = True, 5
    fake.date_format = "%d.%m.%Y %H:%M"  # not one jobhooks tries
    for _ in range(8):
        fake.add(at=past(100))
    config = platform.write_config()

    async def scenario() -> tuple[str, list[int]]:
        async with platform.poller(config) as poller:
            await poller.poll_once()
            expected = [fake.add(result=FAILURE) for _ in range(12)]
            await poller.poll_once()
            await poller.poll_once()
            return poller.caps.mode if poller.caps else "", expected

    mode, expected = asyncio.run(scenario())
    assert mode == "scan"
    assert history_ids(platform.completions()) == expected


def test_a_wrong_password_names_the_credential(platform: Platform) -> None:
    platform.fake.password = "the platform's real password"
    config = platform.write_config()

    async def scenario() -> None:
        async with platform.poller(config) as poller:
            await poller.poll_once()

    with pytest.raises(PlatformAuthError) as caught:
        asyncio.run(scenario())
    message = str(caught.value)
    assert "401 Unauthorized" in message
    assert "user 'DOMAIN\\svc-jobhooks' ([platform] username and password)" in message
    assert "kf-pw" not in message
    assert all(s.path == HISTORY or "Agents" not in s.path for s in platform.fake.served)


def _hidden(fake: Any, identifier: int) -> Callable[[], None]:
    """Hide row ``identifier`` from the history, as a platform whose database made later
    ids visible first; returns what shows it again."""
    with fake.lock:
        row = fake.rows.pop(identifier)
        fake._ids.remove(identifier)

    def show() -> None:
        with fake.lock:
            fake.rows[identifier] = row
            bisect.insort(fake._ids, identifier)

    return show


@pytest.mark.parametrize(
    "next_poller", [None, "test", "other"], ids=["same poller", "restarted", "another node"]
)
def test_an_id_that_becomes_visible_after_later_ones_is_still_read(
    platform: Platform, next_poller: str | None
) -> None:
    """SQL Server hands out ids as inserts begin and shows rows as they commit: a run's
    row can appear after rows with higher ids were read. The ids skipped are stored with
    the position that passed them: a restart, or another node taking the lease, keeps
    looking for them."""
    fake = platform.fake
    config = platform.write_config()

    async def scenario() -> list[int]:
        async with platform.poller(config) as poller:
            await poller.poll_once()
            ids = [fake.add(result=FAILURE) for _ in range(5)]
            show = _hidden(fake, ids[2])
            await poller.poll_once()
            if next_poller is None:
                show()
                await poller.poll_once()
                await poller.poll_once()
                return ids
        show()
        async with platform.poller(config, node=next_poller) as poller:
            await poller.poll_once()
        return ids

    ids = asyncio.run(scenario())
    assert history_ids(platform.completions()) == ids, "each once, the late one included"


def test_ids_awaited_are_given_up_after_the_wait_across_restarts(platform: Platform) -> None:
    """An id that never appears (a rolled-back insert) is looked for GAP_WAIT seconds,
    then no more: not by this process, nor by the next."""
    fake = platform.fake
    config = platform.write_config()
    now = [time.time()]

    def clock() -> float:
        return now[0]

    async def requests_of_one_poll(node: str) -> int:
        async with platform.poller(config, node=node, clock=clock) as poller:
            before = len(fake.history_requests())
            await poller.poll_once()
            return len(fake.history_requests()) - before

    async def scenario() -> tuple[int, int, int]:
        async with platform.poller(config, clock=clock) as poller:
            await poller.poll_once()
            ids = [fake.add(result=FAILURE) for _ in range(5)]
            fake.delete(ids[2])
            await poller.poll_once()
        plain = await requests_of_one_poll("test")  # the id awaited: read again
        now[0] += cycle.GAP_WAIT + 1
        given_up = await requests_of_one_poll("test")
        after = await requests_of_one_poll("other")
        return plain, given_up, after

    awaited, given_up, after = asyncio.run(scenario())
    assert awaited == given_up + 1, "a restarted poller still looks for the id, once a poll"
    assert after == given_up, "given up for good: the next node does not look for it again"


@pytest.mark.parametrize("running", [False, True], ids=["new rows", "running rows"])
def test_a_platform_that_ignores_the_page_asked_for_is_an_error_not_a_loop(
    platform: Platform, running: bool
) -> None:
    fake = platform.fake
    fake.strict, fake.max_page = True, 2  # read in pages of 2 by time window or whole
    config = platform.write_config(poll="page_size = 2")

    def first_page_always(query: dict[str, str]) -> None:
        query["pq.pageReturned"] = "1"

    async def scenario() -> None:
        async with platform.poller(config) as poller:
            await poller.poll_once()
            for _ in range(5):
                fake.start_run() if running else fake.add()
            fake.hooks.append(first_page_always)
            await poller.poll_once()

    with pytest.raises(PlatformError, match=r"ignores pq\.pageReturned"):
        asyncio.run(scenario())


def test_a_dry_run_counts_retries_across_pages_as_the_real_poll_does(platform: Platform) -> None:
    """Pages are decided in order in a dry run too: a retry chain spread over pages."""
    fake = platform.fake
    config = platform.write_config(poll="page_size = 2")
    job = uuid.uuid4()

    async def scenario() -> tuple[dict[int, int], dict[int, int]]:
        async with platform.poller(config) as poller:
            await poller.poll_once()
            for _ in range(6):
                fake.add(result=FAILURE, status=WILL_RETRY, job_id=job)
            fake.add(result=FAILURE, job_id=job)
            dry = await poller.poll_once(dry_run=True)
            real = await poller.poll_once()
            return (
                {e.job_history_id: e.current_retry_count for e in dry.emitted},
                {e.job_history_id: e.current_retry_count for e in real.emitted},
            )

    dry, real = asyncio.run(scenario())
    assert sorted(real.values()) == list(range(7))
    assert dry == real


def test_long_runs_are_asked_for_a_few_at_a_time_and_in_turn(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows that never finish must not multiply the requests of every poll."""
    monkeypatch.setattr(cycle, "STRAGGLERS_PER_POLL", 4)
    fake = platform.fake
    config = platform.write_config(poll="page_size = 2")

    async def scenario() -> tuple[list[int], list[int]]:
        async with platform.poller(config) as poller:
            await poller.poll_once()
            long_runs = [fake.start_run() for _ in range(10)]
            for _ in range(20):
                fake.add()
            await poller.poll_once()  # the long runs are open rows far below the position
            asked: list[int] = []
            for _ in range(3):
                before = len(fake.history_requests())
                await poller.poll_once()
                asked.append(
                    sum(
                        1
                        for served in fake.history_requests()[before:]
                        if served.query.get("pq.returnLimit") == "1"
                        # not the check that the newest id is not below the position
                        and "pq.queryString" in served.query
                    )
                )
            for run in long_runs:
                fake.finish(run, result=FAILURE)
            for _ in range(3):
                await poller.poll_once()
            return asked, long_runs

    asked, long_runs = asyncio.run(scenario())
    assert asked == [4, 4, 4]
    assert set(long_runs) <= set(history_ids(platform.completions()))


def test_ids_that_never_appear_cost_a_few_requests_a_poll_not_the_backlog(
    platform: Platform,
) -> None:
    """Ids a platform never shows (rolled back, or deleted) are waited for, but the
    rows read around them are not read again on every poll."""
    fake = platform.fake
    config = platform.write_config(poll="page_size = 10")

    async def scenario() -> list[int]:
        async with platform.poller(config) as poller:
            await poller.poll_once()
            ids = [fake.add() for _ in range(500)]
            for gone in ids[5::10]:
                fake.delete(gone)
            await poller.poll_once()
            asked = []
            for _ in range(3):
                before = len(fake.history_requests())
                await poller.poll_once()
                asked.append(len(fake.history_requests()) - before)
            return asked

    asked = asyncio.run(scenario())
    assert max(asked) <= cycle.GAP_READS + 2, asked
    assert len(history_ids(platform.completions())) == 450


def test_a_history_reset_below_the_position_is_an_error_that_says_so(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    # The platform's database is restored from an older backup (or its history reset):
    # its new runs take ids the poller has passed already, so they would never be read.
    fake = platform.fake
    config = platform.write_config()
    created: list[int] = []
    errors: list[PlatformError] = []

    async def scenario() -> None:
        async with platform.poller(config) as poller:
            created.append((await poller.poll_once()).created)
            for _ in range(3):
                fake.add()
            created.append((await poller.poll_once()).created)
            with fake.lock:
                for identifier in list(fake.rows):
                    fake.delete(identifier)
                fake._next_id = 10
            for _ in range(2):
                fake.add()
            for _ in range(2):
                try:
                    await poller.poll_once()
                except PlatformError as exc:
                    errors.append(exc)
            with fake.lock:
                fake._next_id = 1003
            for _ in range(3):  # its ids pass the position again: read as before
                fake.add()
            created.append((await poller.poll_once()).created)

    asyncio.run(scenario())
    assert created == [0, 3, 3]
    assert len(errors) == 2, "every poll says so while the newest id is below the position"
    message = str(errors[0])
    assert "newest job history row has JobHistoryId 12, below 1003" in message
    assert "reset or restored from an older backup" in message
    assert "[server] database" in message
    assert fake.password not in message


def test_a_run_dated_far_in_the_future_does_not_carry_the_window_past_later_runs(
    platform: Platform,
) -> None:
    """Read by time window (the documented fields only), one run whose OperationStart is
    years ahead (the platform's database clock jumped, or a row written by hand) must not
    move the window there: the runs after it, dated now, must still be read."""
    fake = platform.fake
    fake.strict = True
    config = platform.write_config()
    expected: list[int] = []

    async def scenario() -> str:
        async with platform.poller(config) as poller:
            await poller.poll_once()
            expected.append(fake.add(result=FAILURE, at=past(-10 * 365 * 86_400)))
            for _ in range(3):
                await poller.poll_once()
                expected.append(fake.add(result=FAILURE))
            await poller.poll_once()
            return poller.caps.mode if poller.caps else ""

    assert asyncio.run(scenario()) == "window"
    assert history_ids(platform.completions()) == expected
