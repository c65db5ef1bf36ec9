"""The limit on synchronous handlers and isolated children running at once (``threads``):
slots go to those waiting in order, and one given up by a waiter goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from jobhooks.dispatch.slots import SlotsClosed, ThreadSlots


def test_slots_go_to_those_waiting_in_the_order_they_asked() -> None:
    slots = ThreadSlots(1)
    granted: list[str] = []

    def waiter(name: str) -> Callable[[], bool]:
        return lambda: granted.append(name) is None

    assert slots.take(lambda: True), "a free slot is taken at once"
    assert not slots.take(waiter("first"))
    assert not slots.take(waiter("second"))
    slots.give()
    assert granted == ["first"] and slots.free == 0, "the slot went on, not back"
    slots.give()
    slots.give()
    assert granted == ["first", "second"]
    assert slots.free == 1


def test_a_slot_refused_by_a_waiter_goes_to_the_next_or_back() -> None:
    slots = ThreadSlots(1)
    granted: list[str] = []
    assert slots.take(lambda: True)
    slots.take(lambda: False)  # e.g. cancelled while it waited
    slots.take(lambda: granted.append("next") is None)
    slots.give()
    assert granted == ["next"] and slots.free == 0
    slots.take(lambda: False)
    slots.give()
    assert slots.free == 1


def test_a_newcomer_does_not_overtake_those_waiting() -> None:
    slots = ThreadSlots(1)
    order: list[str] = []

    async def hold(name: str, release: asyncio.Event) -> None:
        async with slots:
            order.append(name)
            await release.wait()

    async def main() -> None:
        first = asyncio.Event()
        holder = asyncio.create_task(hold("a", first))
        await asyncio.sleep(0)
        waiting = asyncio.create_task(hold("b", asyncio.Event()))
        await asyncio.sleep(0)
        first.set()
        await holder
        # "b" was granted the slot as "a" left; a synchronous taker now waits behind it.
        assert not slots.take(lambda: order.append("c") is None)
        await asyncio.sleep(0)
        assert order == ["a", "b"]
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert order == ["a", "b", "c"], "b's slot went to c when b left"

    asyncio.run(main())


def test_a_run_cancelled_while_it_waits_holds_no_slot() -> None:
    slots = ThreadSlots(2)

    async def main() -> None:
        held = asyncio.Event()

        async def hold() -> None:
            async with slots:
                await held.wait()

        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.sleep(0)
        waiters = [asyncio.create_task(hold()) for _ in range(3)]
        await asyncio.sleep(0)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        held.set()
        await asyncio.gather(*holders)

    asyncio.run(main())
    assert slots.free == 2


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1, not 0"):
        ThreadSlots(0)


def test_closing_refuses_those_waiting_in_async_with_and_newcomers() -> None:
    slots = ThreadSlots(1)

    async def main() -> list[str]:
        held = asyncio.Event()
        seen: list[str] = []

        async def run(name: str) -> None:
            try:
                async with slots:
                    seen.append(f"{name} ran")
                    await held.wait()
            except SlotsClosed:
                seen.append(f"{name} refused")

        first = asyncio.create_task(run("first"))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(run(name)) for name in ("second", "third")]
        await asyncio.sleep(0)
        slots.close()
        await asyncio.gather(*waiting)
        await run("late")
        held.set()
        await first
        return seen

    assert asyncio.run(main()) == [
        "first ran",
        "second refused",
        "third refused",
        "late refused",
    ]
    assert slots.free == 1, "the running one's slot came back"
