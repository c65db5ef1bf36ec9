"""The runtime of one process: what it changes in the interpreter, and puts back."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support.reports import report
from support.server import write_config
from support.tokens import make_token_info

from jobhooks.registry import load
from jobhooks.registry.live import ReloadStatus
from jobhooks.service import runtime as runtime_module
from jobhooks.service.runtime import YOUNG_GENERATION, Runtime


def test_a_runtime_enlarges_the_collectors_young_generation_while_it_runs(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, "")
    runtime = Runtime(load(config), config)
    before = gc.get_threshold()

    async def start_and_stop() -> tuple[int, int, int]:
        await runtime.start()
        try:
            return gc.get_threshold()
        finally:
            await runtime.stop()

    running = asyncio.run(start_and_stop())

    assert running == (YOUNG_GENERATION, *before[1:])
    assert gc.get_threshold() == before, "put back as it was found"


def test_a_reload_whose_setup_never_returns_does_not_hold_the_process_at_stop(
    tmp_path: Path,
) -> None:
    """SIGTERM while a handler's setup() hangs in a reload: the runtime stops, and the
    event loop closes without waiting for the reload's thread (it waited for ever)."""
    config = write_config(tmp_path, "")
    runtime = Runtime(load(config), config)
    release = threading.Event()
    entered = threading.Event()

    def hanging(catalog: object) -> object:
        entered.set()
        release.wait(60)
        raise RuntimeError("released")

    runtime.live.reload = hanging  # type: ignore[method-assign]

    async def reload_then_stop() -> None:
        await runtime.start()
        reloading = asyncio.create_task(runtime.reload())
        while not entered.is_set():
            await asyncio.sleep(0.01)
        reloading.cancel()
        await runtime.stop()

    finished = threading.Event()
    thread = threading.Thread(
        target=lambda: (asyncio.run(reload_then_stop()), finished.set()), daemon=True
    )
    try:
        thread.start()
        assert finished.wait(10), "the event loop waited for the reload's thread"
    finally:
        release.set()
        thread.join(10)


def test_a_reload_waits_for_a_cancelled_reload_still_reading(tmp_path: Path) -> None:
    """Reloads never read at once, even when the one before was given up by its caller."""
    config = write_config(tmp_path, "")
    runtime = Runtime(load(config), config)
    reading: list[int] = []
    most: list[int] = []
    original = runtime.live.reload

    def slow(catalog: Any) -> Any:
        reading.append(1)
        most.append(len(reading))
        time.sleep(0.3)
        reading.pop()
        return original(catalog)

    runtime.live.reload = slow  # type: ignore[method-assign]

    async def two_reloads() -> None:
        await runtime.start()
        try:
            first = asyncio.create_task(runtime.reload())
            await asyncio.sleep(0.1)
            first.cancel()
            await runtime.reload()
        finally:
            await runtime.stop()

    asyncio.run(two_reloads())
    assert max(most) == 1


def test_a_reload_asked_for_while_one_is_stuck_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload whose handler's setup() never returns: the reloads asked for after it has
    read for SLOW_RELOAD are refused at once, saying why (they waited for ever: SIGHUP did
    nothing and POST /admin/reload never answered)."""
    monkeypatch.setattr(runtime_module, "SLOW_RELOAD", 0.2)
    config = write_config(tmp_path, "")
    runtime = Runtime(load(config), config)
    release = threading.Event()
    entered = threading.Event()
    original = runtime.live.reload

    def hanging(catalog: Any) -> Any:
        entered.set()
        release.wait(30)
        return original(catalog)

    runtime.live.reload = hanging  # type: ignore[method-assign]

    async def reload_twice() -> ReloadStatus:
        await runtime.start()
        try:
            first = asyncio.create_task(runtime.reload())
            while not entered.is_set():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # past SLOW_RELOAD (0.2 s here)
            second = await asyncio.wait_for(runtime.reload(), 5)
            release.set()
            assert (await first).applied
            return second
        finally:
            release.set()
            await runtime.stop()

    refused = asyncio.run(reload_twice())
    assert not refused.applied
    (problem,) = refused.problems
    assert "a reload has been reading the configuration for" in problem
    assert "restart jobhooks" in problem


def test_a_storm_of_sighups_reloads_twice_at_most(tmp_path: Path) -> None:
    """SIGHUPs that arrive while a reload reads are merged into one reload after it (which
    reads the file as it is then): each used to queue a reload of its own."""
    config = write_config(tmp_path, "")
    runtime = Runtime(load(config), config)
    runtime.handle_sighup = True
    release = threading.Event()
    reads: list[float] = []
    original = runtime.live.reload

    def gated(catalog: Any) -> Any:
        reads.append(time.monotonic())
        release.wait(10)
        return original(catalog)

    runtime.live.reload = gated  # type: ignore[method-assign]

    async def storm() -> None:
        await runtime.start()
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            while not reads:
                await asyncio.sleep(0.01)
            for _ in range(50):
                os.kill(os.getpid(), signal.SIGHUP)
                await asyncio.sleep(0)
            await asyncio.sleep(0.1)
            release.set()
            while len(reads) < 2:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # time enough for any further reload to begin
        finally:
            release.set()
            await runtime.stop()

    asyncio.run(storm())
    assert len(reads) == 2, "the SIGHUPs during the first reload make one more, not 50"


DIGEST = """
[[handlers]]
name = "machine-down"
type = "log"
job_types = "*"
group_by = ["client_machine"]
group_wait = "{wait}"
"""


def test_a_reload_that_shortens_group_wait_closes_the_digests_collecting_sooner(
    tmp_path: Path,
) -> None:
    """A group_wait of "1d" meant as "1h" is fixed by a reload: the digest already
    collecting kept its day, and every failure of its machine meanwhile joined it, so
    nothing was sent for a day after the fix."""
    now = [1_800_000_000.0]
    config = write_config(tmp_path, DIGEST.format(wait="1d"))
    runtime = Runtime(load(config), config, with_worker=False, clock=lambda: now[0])
    _token, admin = make_token_info(runtime.store, "admin")

    async def fail_at(at: float, key: str) -> tuple[str, float | None]:
        now[0] = at
        body = json.dumps(report(client_machine="store01.example.com")).encode()
        receipt = await runtime.intake.check_in(body, admin, key)
        (run,) = receipt.runs
        return run.id, run.closes_at

    async def scenario() -> list[tuple[str, float | None]]:
        await runtime.start()
        try:
            first = await fail_at(1_800_000_000.0, "first")
            config.write_text(config.read_text().replace('"1d"', '"30m"'), encoding="utf-8")
            assert (await runtime.reload()).applied
            again = await fail_at(1_800_000_060.0, "first")  # the first, sent again
            later = await fail_at(1_800_003_600.0, "later")
            return [first, again, later]
        finally:
            await runtime.stop()

    (first_id, opened), (again_id, closes), (later_id, _) = asyncio.run(scenario())
    assert opened == 1_800_000_000.0 + 86_400
    assert (again_id, closes) == (first_id, 1_800_000_000.0 + 1800)
    assert later_id != first_id, "an hour later, the next failure opens the next digest"
