"""The wall clock stepping under running processes (NTP correcting a clock that drifted
far, a virtual machine resumed with the host's time): whether another process is gone
is judged by how long its heartbeat has not changed, as this process counts time, not
by comparing wall clock readings, so a step does not make live processes look gone."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from support.clock import ManualClock
from support.reports import new_completion
from support.storedb import StoreDb

from jobhooks.store import Store
from jobhooks.store.checkins import insert_checkins
from jobhooks.store.nodes import STALE_AFTER, NodeIdentity, Sightings, beat, dead_nodes
from jobhooks.store.queue import ClaimRequest, claim_runs

NOW = 1_800_000_000.0
ME = NodeIdentity.of_this_process()
HOUR = 3600.0


def _node(name: str) -> NodeIdentity:
    """A process of another machine (its process number cannot be looked up here)."""
    return NodeIdentity(f"elsewhere:1:{name}", "elsewhere", "b", 1, None)


def test_a_clock_stepped_forward_takes_no_run_from_a_live_process(tmp_path: Path) -> None:
    """Two processes on one SQLite file share the machine's clock: stepped an hour ahead,
    each one's last heartbeat is an hour old until it beats again. The other must not
    take the runs it holds meanwhile: the handler would run twice."""
    url = f"sqlite:///{tmp_path / 'jobhooks.db'}"
    clock = ManualClock(NOW)
    first, second = Store(url, clock=clock), Store(url, clock=clock)
    holder, other = replace(ME, id=f"{ME.id}:first"), replace(ME, id=f"{ME.id}:second")
    beating = [True]

    async def scenario() -> tuple[list[str], list[str]]:
        await first.start_heartbeat(holder, lambda: beating[0])
        await second.start_heartbeat(other, lambda: beating[0])
        beating[0] = False  # no heartbeat between the step and the claim: the race, won
        await first.check_in(new_completion("log"))
        [held] = await first.claim(holder.id, 10, {})
        assert await second.dead_nodes() == []
        clock.advance(HOUR)
        dead = await second.dead_nodes()
        taken = await second.claim(other.id, 10, {}, dead)
        return dead, [run.id for run in taken if run.id == held.id]

    try:
        dead, taken = asyncio.run(scenario())
    finally:
        first.close()
        second.close()
    assert dead == [], "alive, only the clock moved"
    assert taken == [], "a live process's run was taken: it would run twice"


def test_a_process_silent_long_enough_is_gone_whatever_the_wall_clock_says(db: StoreDb) -> None:
    """Stepped back an hour, heartbeats look an hour in the future: a process that stops
    (killed, its machine gone) is still found gone once its heartbeat has not changed
    for STALE_AFTER seconds, not an hour later. One that beats stays."""
    silent, beating = _node("silent"), _node("beating")
    elapsed = ManualClock(0.0)
    sightings = Sightings(elapsed)

    def found(at: float) -> list[str]:
        with db.engine.connect() as connection:
            return list(dead_nodes(connection, ME, at, sightings=sightings))

    def beat_at(node: NodeIdentity, at: float) -> None:
        db.apply(lambda connection, _items, _now: beat(connection, node, NOW, at), [None], at)

    beat_at(silent, NOW)
    beat_at(beating, NOW)
    assert found(NOW) == []
    wall = NOW - HOUR  # the clock steps back; ``silent`` is killed
    for _ in range(int(STALE_AFTER / 2) + 1):
        elapsed.advance(2.0)
        wall += 2.0
        beat_at(beating, wall)
        gone = found(wall)
    assert gone == [silent.id]


def test_a_process_found_gone_that_beats_after_the_clock_stepped_back_keeps_its_runs(
    db: StoreDb,
) -> None:
    """Found silent (paused), it resumes on a clock stepped back: its new heartbeat is
    older than the one it was found with, and it is alive all the same."""
    paused = _node("paused")
    db.apply(lambda connection, _items, _now: beat(connection, paused, NOW, NOW), [None], NOW)
    [receipt] = db.apply(
        lambda connection, items, now: insert_checkins(
            connection, items, now, reserve=lambda count: (paused.id, count)
        ),
        [new_completion("mail")],
        NOW,
    )
    with db.engine.connect() as connection:
        found = dead_nodes(connection, ME, NOW + STALE_AFTER + 1)
    assert list(found) == [paused.id]

    resumed = NOW - HOUR
    db.apply(lambda connection, _items, _now: beat(connection, paused, NOW, resumed), [None], 0)

    request = ClaimRequest("w2", 10, {"mail": 30.0}, 60.0, found)
    [claimed] = db.apply(claim_runs, [request], resumed + 1)
    assert claimed == [], f"{receipt.runs[0].id} was taken from a process that beats"
