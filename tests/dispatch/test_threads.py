"""The threads synchronous handlers run on: reused between calls, never held up by a call
that does not return, ended when idle, exceptions delivered as the caller's."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from jobhooks.dispatch.threads import HandlerThreads


def test_a_thread_is_reused_by_the_next_call() -> None:
    threads = HandlerThreads()

    async def main() -> set[int]:
        return {await threads.call(threading.get_native_id) for _ in range(50)}

    assert len(asyncio.run(main())) == 1, "one thread served 50 calls in a row"
    assert threads.idle == 1


def test_a_call_that_never_returns_holds_up_nothing() -> None:
    threads = HandlerThreads()
    stuck = threading.Event()

    async def main() -> list[int]:
        blocked = threads.call(stuck.wait)
        done = await asyncio.gather(*(threads.call(lambda: 7) for _ in range(20)))
        assert not blocked.done()
        return done

    try:
        assert asyncio.run(main()) == [7] * 20
    finally:
        stuck.set()


def test_calls_at_once_each_get_a_thread() -> None:
    threads = HandlerThreads()
    barrier = threading.Barrier(8, timeout=5)

    async def main() -> None:
        # Eight calls that can only end together: each must be on a thread of its own.
        await asyncio.gather(*(threads.call(barrier.wait) for _ in range(8)))

    asyncio.run(main())
    assert threads.idle == 8


def test_idle_threads_end() -> None:
    threads = HandlerThreads(idle_exit=0.05)

    async def main() -> None:
        await asyncio.gather(*(threads.call(lambda: None) for _ in range(3)))

    before = threading.active_count()
    asyncio.run(main())
    deadline = time.monotonic() + 5
    while threads.idle and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threads.idle == 0
    assert threading.active_count() <= before


def test_exceptions_reach_the_caller_and_system_exit_is_an_ordinary_error() -> None:
    threads = HandlerThreads()

    def leave() -> None:
        raise SystemExit(3)

    def fail() -> None:
        raise ValueError("bad store")

    async def main() -> None:
        with pytest.raises(ValueError, match="bad store"):
            await threads.call(fail)
        with pytest.raises(RuntimeError, match="SystemExit: 3"):
            await threads.call(leave)
        assert await threads.call(lambda: "still serving") == "still serving"

    asyncio.run(main())


def test_a_call_no_thread_could_be_started_for_is_refused_and_never_made_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The process may start no more threads (a thread or process limit, threads held by
    handlers that never returned): the call is refused, and not left queued for the next
    thread to make after its caller counted it as failed (the handler ran after all)."""
    threads = HandlerThreads()
    made: list[str] = []
    start = threading.Thread.start

    def refuse(thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    async def main() -> None:
        monkeypatch.setattr(threading.Thread, "start", refuse)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            threads.call(lambda: made.append("refused"))
        monkeypatch.setattr(threading.Thread, "start", start)
        await threads.call(lambda: made.append("second"))
        await threads.call(lambda: made.append("third"))

    asyncio.run(main())
    assert made == ["second", "third"]
