"""One attempt of a handler: success, or a failure whose error says what went wrong."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from support.handlers import read_lines
from support.registrations import Register

from jobhooks.dispatch.execute import run_attempt
from jobhooks.dispatch.isolation import run_as_registered, run_in_process
from jobhooks.dispatch.outcome import Outcome
from jobhooks.dispatch.slots import ThreadSlots
from jobhooks.registry import RegisteredHandler
from jobhooks.testing import sample_context


def _attempt(registered: RegisteredHandler, slots: ThreadSlots | None = None) -> Outcome:
    return asyncio.run(run_attempt(registered, sample_context(), slots))


def test_a_handler_that_returns_true_succeeded(register: Register, tmp_path: Path) -> None:
    trace = tmp_path / "trace.log"

    outcome = _attempt(register("Appender", properties={"path": str(trace)}))

    assert outcome.succeeded
    assert outcome.error is None
    assert len(read_lines(trace)) == 1


def test_a_handler_that_raises_failed_with_its_exception(register: Register) -> None:
    outcome = _attempt(register("Raises"))

    assert not outcome.succeeded
    assert outcome.error == "RuntimeError: handler exploded on purpose"
    assert outcome.traceback is not None
    assert "in run_handler" in outcome.traceback


def test_a_handler_that_returns_false_failed(register: Register) -> None:
    outcome = _attempt(register("ReturnsFalse"))

    assert not outcome.succeeded
    assert outcome.error == "run_handler returned False, not True"


@pytest.mark.parametrize("handler_type", ["CallsSysExit", "AsyncCallsSysExit"])
def test_sys_exit_in_a_handler_is_a_failed_attempt_not_the_end_of_the_worker(
    register: Register, handler_type: str
) -> None:
    outcome = _attempt(register(handler_type))

    assert not outcome.succeeded
    assert outcome.error is not None and "SystemExit: 2" in outcome.error


def test_a_hanging_async_handler_times_out(register: Register) -> None:
    started = time.perf_counter()
    outcome = _attempt(register("AsyncHangs", timeout=0.2))

    assert not outcome.succeeded
    assert outcome.error == "timed out after 0.2 s"
    assert time.perf_counter() - started < 2


def test_a_hung_sync_handler_times_out_and_frees_its_slot(
    register: Register, tmp_path: Path
) -> None:
    hangs = register("Hangs", timeout=0.2)
    trace = tmp_path / "after.log"
    normal = register("Appender", properties={"path": str(trace)})

    async def main() -> list[Outcome]:
        slots = ThreadSlots(2)
        hung = await asyncio.gather(
            *(run_attempt(hangs, sample_context(), slots) for _ in range(4))
        )
        after = await asyncio.gather(
            *(run_attempt(normal, sample_context(), slots) for _ in range(4))
        )
        return [*hung, *after]

    started = time.perf_counter()
    outcomes = asyncio.run(main())

    assert [o.error for o in outcomes[:4]] == ["timed out after 0.2 s"] * 4
    assert all(o.succeeded for o in outcomes[4:]), "threads stuck in a handler hold no slot"
    assert len(read_lines(trace)) == 4
    assert time.perf_counter() - started < 3


def test_a_handler_isolated_in_a_process_that_exits_failed_with_its_code(
    register: Register,
) -> None:
    registered = register("Exits", isolation="process", timeout=30)

    outcome = asyncio.run(run_in_process(registered, sample_context()))

    assert not outcome.succeeded
    assert outcome.error is not None and "exited with code 3" in outcome.error


def test_a_hanging_handler_isolated_in_a_process_is_killed_at_its_timeout(
    register: Register,
) -> None:
    registered = register("Hangs", isolation="process", timeout=1)

    started = time.perf_counter()
    outcome = asyncio.run(run_in_process(registered, sample_context()))

    assert not outcome.succeeded
    assert outcome.error == "timed out after 1 s (killed)"
    assert time.perf_counter() - started < 10


def test_isolated_attempts_share_the_threads_and_are_timed_from_the_handlers_start(
    register: Register, tmp_path: Path
) -> None:
    """Four isolated attempts of a 0.3 s handler with a 0.5 s timeout and two slots: at
    most two children at once, and neither the wait for a slot nor a child's start
    (a fresh interpreter importing the handler) counts against the timeout."""
    spans = tmp_path / "spans.log"
    registered = register(
        "Spans", isolation="process", timeout=0.5, properties={"path": str(spans)}
    )

    async def main() -> list[Outcome]:
        slots = ThreadSlots(2)
        attempts = (run_in_process(registered, sample_context(), slots) for _ in range(4))
        return list(await asyncio.gather(*attempts))

    outcomes = asyncio.run(main())

    assert [o.error for o in outcomes] == [None] * 4
    intervals = [tuple(map(float, line.split())) for line in read_lines(spans)]
    assert len(intervals) == 4
    at_once = max(sum(s <= t < e for s, e in intervals) for t, _ in intervals)
    assert at_once <= 2, intervals


def test_waiting_for_a_free_thread_is_not_part_of_the_timeout(
    register: Register, tmp_path: Path
) -> None:
    """Three runs of a 0.3 s handler share one thread and a 0.5 s timeout: the last waits
    0.6 s for the thread, yet each attempt is timed from its own start."""
    trace = tmp_path / "trace.log"
    registered = register("Sleeps", timeout=0.5, properties={"path": str(trace), "seconds": 0.3})

    async def main() -> list[Outcome]:
        slots = ThreadSlots(1)
        return list(
            await asyncio.gather(
                *(run_attempt(registered, sample_context(), slots) for _ in range(3))
            )
        )

    outcomes = asyncio.run(main())

    assert [outcome.error for outcome in outcomes] == [None, None, None]
    assert all(0.25 <= outcome.duration < 0.5 for outcome in outcomes)
    starts = sorted(outcome.started_at for outcome in outcomes)
    assert starts[2] - starts[0] >= 0.5, "the third started when a thread was free"
    assert len(read_lines(trace)) == 3, "each body ran once"


def test_an_async_handler_that_ignores_its_cancellation_is_abandoned(
    register: Register,
) -> None:
    registered = register("IgnoresCancellation", timeout=0.2, properties={"seconds": 2.5})

    async def main() -> tuple[Outcome, float]:
        started = time.perf_counter()
        outcome = await run_attempt(registered, sample_context())
        return outcome, time.perf_counter() - started

    outcome, took = asyncio.run(main())

    assert outcome.error == "timed out after 0.2 s"
    assert took < 1.5, "the attempt ends soon after its timeout, not when the handler does"


def test_sync_handlers_run_on_threads_kept_between_runs(register: Register, tmp_path: Path) -> None:
    trace = tmp_path / "threads.log"
    registered = register("ThreadRecorder", properties={"path": str(trace)})

    async def main() -> None:
        for _ in range(30):
            assert (await run_attempt(registered, sample_context(), ThreadSlots(8))).succeeded

    asyncio.run(main())
    # One run at a time: each takes a thread left idle by an earlier run (in this process,
    # earlier tests may have left a few), never a new thread per run.
    used = set(read_lines(trace))
    assert len(used) <= 10, f"{len(used)} threads for 30 runs one after another"


def _misbehaving(register: Register, handler_type: str, **fields: object) -> RegisteredHandler:
    return register(handler_type, type=f"support.misbehaving:{handler_type}", **fields)


@pytest.mark.parametrize("handler_type", ["AsyncRaisesCancelled", "AsyncAwaitsCancelled"])
def test_a_cancelled_error_the_handler_raises_itself_is_a_failed_attempt(
    register: Register, handler_type: str
) -> None:
    outcome = _attempt(_misbehaving(register, handler_type))

    assert not outcome.succeeded
    assert outcome.error is not None and outcome.error.startswith("CancelledError")
    assert outcome.traceback is not None and "CancelledError" in outcome.traceback


def test_a_cancel_scope_in_a_handler_cancels_the_tasks_it_started(register: Register) -> None:
    """anyio delivers a cancellation only to a task whose coroutine's state it can read:
    the guard on a handler's tasks hid it, and a 0.3 s scope waited the whole 2 s."""
    registered = _misbehaving(register, "AsyncCancelsAThreadsCall")

    outcome = asyncio.run(run_attempt(registered, sample_context()))

    assert outcome.succeeded, outcome.error
    assert outcome.duration < 1.5


def test_the_guard_passes_on_what_create_task_gives_it(register: Register) -> None:
    """Newer Pythons (and uvloop on Python 3.13) call a task factory with name= and
    eager_start=: the guard refused them, and every task of the loop failed after the
    first async attempt."""
    registered = _misbehaving(register, "AsyncGathersAnExit")
    given: list[dict[str, object]] = []

    def recording(
        loop: asyncio.AbstractEventLoop, coro: Any, **options: object
    ) -> asyncio.Future[Any]:
        given.append(options)
        return asyncio.Task(coro, loop=loop)

    async def own() -> None:
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(recording)
        await run_attempt(registered, sample_context())
        factory = loop.get_task_factory()
        assert factory is not None
        await factory(loop, own(), name="own", eager_start=False)  # type: ignore[call-arg]

    asyncio.run(main())
    assert {"name": "own", "eager_start": False} in given


@pytest.mark.parametrize(
    ("handler_type", "error"),
    [
        ("RaisesUnprintable", "_Unprintable: (its message could not be read"),
        ("ExitsUnprintable", "RuntimeError: _UnprintableExit: (its message could not be read"),
        ("ReturnsUnprintable", "run_handler returned a _Unrepresentable (its repr() raised"),
        ("ReturnsClassless", "run_handler returned <classless>, not True"),
    ],
)
def test_an_exception_or_result_that_cannot_be_shown_is_a_failed_attempt_saying_so(
    register: Register, handler_type: str, error: str
) -> None:
    registered = _misbehaving(register, handler_type)

    async def main() -> Outcome:
        return await asyncio.wait_for(run_attempt(registered, sample_context()), 5)

    outcome = asyncio.run(main())

    assert not outcome.succeeded
    assert outcome.error is not None and outcome.error.startswith(error), outcome.error


@pytest.mark.parametrize(
    "handler_type", ["ReturnsExitingCoroutine", "AsyncReturnsExitingCoroutine"]
)
def test_sys_exit_in_a_coroutine_a_handler_returns_is_a_failed_attempt_not_the_end_of_the_worker(
    register: Register, handler_type: str
) -> None:
    """A task whose coroutine raises SystemExit re-raises it out of the event loop: the
    awaitable a run_handler returns must be guarded as run_handler itself is."""
    registered = _misbehaving(register, handler_type)

    async def main() -> tuple[Outcome, Outcome]:
        outcome = await run_attempt(registered, sample_context())
        await asyncio.sleep(0.05)  # the loop still runs after the attempt ended
        return outcome, await run_attempt(registered, sample_context())

    first, second = asyncio.run(main())

    for outcome in (first, second):
        assert not outcome.succeeded
        assert outcome.error == "RuntimeError: SystemExit: 3", outcome.error


@pytest.mark.parametrize(
    ("handler_type", "error"),
    [
        ("AsyncGathersAnExit", "RuntimeError: SystemExit: 3"),
        ("AsyncTaskGroupExit", "ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)"),
    ],
)
def test_sys_exit_in_a_task_a_handler_starts_is_a_failed_attempt_not_the_end_of_the_worker(
    register: Register, handler_type: str, error: str
) -> None:
    """asyncio re-raises SystemExit out of the event loop from any task: one a handler
    started (asyncio.gather, a TaskGroup) ended the worker, with exit code 0 for
    sys.exit(0). The loop's own tasks are left as they are."""
    registered = _misbehaving(register, handler_type)

    async def own() -> str:
        return "jobhooks' own"

    async def main() -> tuple[Outcome, Outcome, bool]:
        outcome = await run_attempt(registered, sample_context())
        await asyncio.sleep(0.05)  # the loop still runs after the attempt ended
        task = asyncio.create_task(own())
        await task
        unwrapped = task.get_coro().__name__ == "own"  # type: ignore[union-attr]
        return outcome, await run_attempt(registered, sample_context()), unwrapped

    first, second, unwrapped = asyncio.run(main())

    for outcome in (first, second):
        assert not outcome.succeeded
        assert outcome.error == error, outcome.error
    assert unwrapped


@pytest.mark.parametrize(
    ("handler_type", "error"),
    [
        ("RaisesUnprintable", "_Unprintable: (its message could not be read"),
        ("ReturnsUnprintable", "run_handler returned a _Unrepresentable (its repr() raised"),
    ],
)
def test_an_isolated_handler_reports_what_it_can_of_an_exception_or_result(
    register: Register, handler_type: str, error: str
) -> None:
    registered = _misbehaving(register, handler_type, isolation="process", timeout=30)

    outcome = asyncio.run(run_in_process(registered, sample_context()))

    assert not outcome.succeeded
    assert outcome.error is not None and outcome.error.startswith(error), outcome.error


def test_an_attempt_held_up_by_another_blocking_the_loop_is_judged_by_its_result(
    register: Register,
) -> None:
    """One async handler blocks the event loop (``time.sleep`` in ``async def``) longer
    than another's timeout: the other, which ended in time as far as it could tell, is
    not failed for time it never had (failed, it would run twice)."""
    blocker = _misbehaving(register, "AsyncBlocks", timeout=5)
    prompt = register("AsyncSucceeds", timeout=0.2)

    async def both() -> list[Outcome]:
        return list(
            await asyncio.gather(
                run_attempt(prompt, sample_context()), run_attempt(blocker, sample_context())
            )
        )

    waited, blocked = asyncio.run(both())

    assert waited.succeeded, waited.error
    assert blocked.succeeded, blocked.error


@pytest.mark.parametrize("isolation", ["none", "process"])
@pytest.mark.parametrize(
    ("handler_type", "error"),
    [
        ("RaisesUnstorable", "ValueError: bad\\x00byte, lone \\ud800 half"),
        ("ReturnsUnstorable", "run_handler returned <bad\\x00byte, lone \\ud800 half>, not True"),
    ],
)
def test_a_nul_or_a_lone_surrogate_in_an_error_is_written_as_an_escape(
    register: Register, handler_type: str, error: str, isolation: str
) -> None:
    """Text no database stores (PostgreSQL refuses a NUL, SQLite and PostgreSQL a lone
    surrogate) would leave the attempt's outcome unstored and its run "running"."""
    registered = _misbehaving(register, handler_type, isolation=isolation, timeout=30)

    outcome = asyncio.run(run_as_registered(registered, sample_context()))

    assert outcome.error == error
    for text in (outcome.error, outcome.traceback or ""):
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogate


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_an_exception_whose_traceback_cannot_be_formatted_is_a_failed_attempt_saying_so(
    register: Register, isolation: str
) -> None:
    registered = _misbehaving(register, "RaisesWithBrokenNotes", isolation=isolation, timeout=30)

    async def main() -> Outcome:
        return await asyncio.wait_for(run_as_registered(registered, sample_context()), 15)

    outcome = asyncio.run(main())

    assert not outcome.succeeded
    assert outcome.error == "_BrokenNotes: notes break"
    assert outcome.traceback == (
        "_BrokenNotes: notes break\n"
        "(its traceback could not be formatted: ValueError while formatting it)"
    )


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_huge_return_value_is_shown_cut_short(register: Register, isolation: str) -> None:
    """The whole repr of a 10 MB value was the attempt's error: stored in the run and in
    its attempt, and logged as one 10 MB WARNING line."""
    registered = _misbehaving(register, "ReturnsHuge", isolation=isolation, timeout=30)

    outcome = asyncio.run(run_as_registered(registered, sample_context()))

    assert not outcome.succeeded
    assert outcome.error is not None
    assert outcome.error.startswith("run_handler returned 'xxxxxxxx")
    assert outcome.error.endswith("... (10,000,002 characters), not True")
    assert len(outcome.error) < 300


@pytest.mark.parametrize(("flaky", "final"), [(False, True), (True, False)])
def test_permanent_failures_raised_in_a_task_group_are_permanent_with_nothing_else(
    register: Register, flaky: bool, final: bool
) -> None:
    """asyncio.TaskGroup raises a handler's PermanentFailure in an ExceptionGroup: it was
    retried max_attempts times, as any failure. A group of nothing but permanent failures
    is final now; one with any other failure in it is retried."""
    registered = register("GivesUpInATaskGroup", properties={"flaky": flaky})

    outcome = _attempt(registered)

    assert not outcome.succeeded
    assert outcome.final is final
    assert outcome.error is not None
    assert outcome.error.endswith("(a permanent failure: not retried)") is final
