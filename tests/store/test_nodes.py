"""Which processes are alive, and the runs of those that are gone taken back at once.

Times are passed in explicitly: a heartbeat goes stale without waiting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy import Connection
from support.clock import ManualClock
from support.reports import new_completion
from support.storedb import StoreDb

from jobhooks.store.checkins import insert_checkins
from jobhooks.store.nodes import (
    BEAT_GAP,
    STALE_AFTER,
    NodeIdentity,
    Sightings,
    beat,
    dead_nodes,
    forget_nodes,
    process_exists,
    process_started,
    stop_node,
)
from jobhooks.store.queue import ClaimRequest, claim_runs
from jobhooks.store.records import ClaimedRun
from jobhooks.store.tables import nodes

NOW = 1_800_000_000.0
ME = NodeIdentity.of_this_process()


def _node(name: str, *, pid: int = 1, host: str = "elsewhere", boot: str = "b") -> NodeIdentity:
    return NodeIdentity(f"{host}:{pid}:{name}", host, boot, pid, None)


def _beat(db: StoreDb, node: NodeIdentity, at: float) -> None:
    def apply(connection: Connection, _items: object, now: float) -> None:
        beat(connection, node, NOW, at)

    db.apply(apply, [None], NOW)


def _found_gone(db: StoreDb, now: float) -> dict[str, float]:
    with db.engine.connect() as connection:
        return dead_nodes(connection, ME, now)


def _dead(db: StoreDb, now: float) -> list[str]:
    return list(_found_gone(db, now))


def _gone_pid() -> tuple[int, int | None]:
    """The pid (and start time) of a process of this machine that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started = process_started(child.pid)
    assert process_exists(child.pid, started)
    child.kill()
    child.wait()
    return child.pid, started


def test_a_silent_or_stopped_process_is_gone_and_a_beating_one_is_not(db: StoreDb) -> None:
    alive, silent, stopped = _node("alive"), _node("silent"), _node("stopped")
    _beat(db, alive, NOW)
    _beat(db, silent, NOW - STALE_AFTER - 1)
    _beat(db, stopped, NOW)
    _beat(db, ME, NOW - 3600)
    db.apply(lambda c, _i, now: stop_node(c, stopped.id, now), [None], NOW)

    assert _dead(db, NOW) == sorted([silent.id, stopped.id]), "never itself, however silent"


def test_a_process_of_this_machine_that_exited_is_gone_at_once(db: StoreDb) -> None:
    pid, started = _gone_pid()
    crashed = replace(ME, id=f"crashed:{pid}", pid=pid, pid_started=started)
    reused = replace(ME, id="reused", pid=ME.pid, pid_started=(ME.pid_started or 0) + 1)
    other_machine = replace(crashed, id="other-machine", pid_space="another boot")
    for node in (crashed, reused, other_machine):
        _beat(db, node, NOW)

    dead = _dead(db, NOW + 1)

    assert crashed.id in dead, "its heartbeat is fresh, but its process has exited"
    assert reused.id in dead, "the pid runs another process (started at another time)"
    assert other_machine.id not in dead, "another machine's pids say nothing of its processes"


CONTAINED = """
import dataclasses, json, sys
from jobhooks.store.nodes import NodeIdentity
print(json.dumps(dataclasses.asdict(NodeIdentity.of_this_process())), flush=True)
sys.stdin.read()
"""


def test_a_live_process_in_another_pid_namespace_of_this_host_is_not_taken_for_gone(
    db: StoreDb,
) -> None:
    """A container sharing the host's name (and boot) numbers its processes apart: its
    pid 1 is not this machine's pid 1, so only its heartbeat can say it is gone."""
    command = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", CONTAINED]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:  # closes both pipes and waits for the child on the way out
        assert child.stdout is not None
        contained = NodeIdentity(**json.loads(child.stdout.readline()))
        assert (contained.host, contained.pid) == (ME.host, 1)
        assert contained.pid_space != ME.pid_space
        _beat(db, contained, NOW)

        assert contained.id not in _dead(db, NOW + 1)
        assert contained.id in _dead(db, NOW + STALE_AFTER + 1), "its heartbeat still counts"


def _store_run(db: StoreDb, now: float, holder: str | None = None) -> str:
    """One stored run; with ``holder``, handed over to that worker as a check-in does."""
    reserve = (lambda count: (holder, count)) if holder else None
    [receipt] = db.apply(
        lambda c, items, t: insert_checkins(c, items, t, reserve=reserve),
        [new_completion("mail", lease=LEASE)],
        now,
    )
    return receipt.runs[0].id


LEASE = 30.0


def _claim(db: StoreDb, now: float, dead: tuple[str, ...] = ()) -> list[ClaimedRun]:
    """A claim by "w2", taking the runs of the ``dead`` processes whatever their heartbeat."""
    return _claim_found(db, now, dict.fromkeys(dead, float("inf")))


def _claim_found(db: StoreDb, now: float, found: dict[str, float]) -> list[ClaimedRun]:
    request = ClaimRequest("w2", 10, {"mail": LEASE}, 60.0, found)
    [claimed] = db.apply(claim_runs, [request], now)
    return claimed


def test_runs_of_a_gone_process_are_taken_back_before_their_lease_ends(db: StoreDb) -> None:
    crashed = _node("crashed")
    _beat(db, crashed, NOW)
    run_id = _store_run(db, NOW, holder=crashed.id)

    assert _claim(db, NOW + 5) == [], "held by a process with a heartbeat row: not due"
    [taken] = _claim(db, NOW + 5, dead=(crashed.id,))

    assert (taken.id, taken.attempt, taken.number) == (run_id, 2, 2)
    [lost] = db.attempts(run_id)
    assert lost.outcome == "lost"
    assert lost.worker == crashed.id
    assert "process is gone" in lost.error
    assert lost.started_at == NOW, "the attempt started when the check-in handed it over"
    assert lost.duration == 5.0


def test_a_live_process_keeps_its_runs_past_their_lease(db: StoreDb) -> None:
    busy = _node("busy")
    _beat(db, busy, NOW)
    _store_run(db, NOW, holder=busy.id)

    assert _claim(db, NOW + LEASE + 600) == [], "it is alive: it reports when the run ends"


def test_a_holder_without_a_heartbeat_row_loses_its_runs_when_the_lease_ends(
    db: StoreDb,
) -> None:
    run_id = _store_run(db, NOW, holder="an-older-jobhooks:77:ab12")

    assert _claim(db, NOW + LEASE - 1) == []
    [taken] = _claim(db, NOW + LEASE + 1)

    assert taken.id == run_id
    assert "lease expired" in db.attempts(run_id)[0].error


def test_the_row_of_a_gone_process_is_forgotten_once_it_holds_nothing(db: StoreDb) -> None:
    crashed, idle = _node("crashed"), _node("idle")
    for node in (crashed, idle):
        _beat(db, node, NOW)
    _store_run(db, NOW, holder=crashed.id)

    db.apply(lambda c, _i, _now: forget_nodes(c, [crashed.id, idle.id]), [None], NOW)
    assert db.count(nodes) == 1, "the idle one went; the one holding a run stays"

    _claim(db, NOW + 1, dead=(crashed.id,))
    _claim(db, NOW + 2, dead=(crashed.id,))
    assert db.count(nodes) == 0


def test_a_process_found_gone_that_beats_again_before_the_claim_keeps_its_runs(
    db: StoreDb,
) -> None:
    """Paused (SIGSTOP, a stopped virtual machine) past STALE_AFTER, then resumed: a claim
    made with the list found while it was silent takes nothing it holds once it beat."""
    paused = _node("paused")
    _beat(db, paused, NOW)
    run_id = _store_run(db, NOW, holder=paused.id)
    found = _found_gone(db, NOW + STALE_AFTER + 1)
    assert list(found) == [paused.id]

    _beat(db, paused, NOW + STALE_AFTER + 2)  # it resumes and beats

    assert _claim_found(db, NOW + STALE_AFTER + 3, found) == [], "alive again: its runs stay"
    assert db.attempts(run_id) == [], "no attempt counted lost"
    assert db.count(nodes) == 1, "and its row is kept"
    [taken] = _claim_found(
        db, NOW + 2 * STALE_AFTER + 9, _found_gone(db, NOW + 2 * STALE_AFTER + 9)
    )
    assert taken.id == run_id, "silent again for good: taken back"


def _watching(db: StoreDb, name: str) -> tuple[ManualClock, Sightings, Callable[..., list[str]]]:
    """Another process that beat at NOW, this process's elapsed clock and sightings, and
    ``found(at=NOW)``: the processes found gone at wall time ``at``."""
    _beat(db, _node(name), NOW)
    elapsed = ManualClock(0.0)
    sightings = Sightings(elapsed)

    def found(at: float = NOW) -> list[str]:
        with db.engine.connect() as connection:
            return list(dead_nodes(connection, ME, at, sightings=sightings))

    return elapsed, sightings, found


def test_silence_counts_only_from_when_this_process_watches_again(db: StoreDb) -> None:
    """An outage cut this process off too: the others' silence counts from when its own
    heartbeat commits again, not from before the outage."""
    elapsed, sightings, found = _watching(db, "cut-off")
    other = _node("cut-off")
    sightings.beaten()
    assert found(NOW) == []
    sightings.failed()  # the outage
    elapsed.advance(STALE_AFTER + 3)
    sightings.beaten()  # back
    assert found(NOW + STALE_AFTER + 3) == [], "the other had no chance to beat yet"
    for _ in range(int(STALE_AFTER / BEAT_GAP)):  # this process beats on
        elapsed.advance(BEAT_GAP)
        sightings.beaten()
    assert found(NOW + 2 * STALE_AFTER + 3) == [other.id], "silent a staleness since"


def test_a_late_heartbeat_of_this_process_begins_its_watch_again(db: StoreDb) -> None:
    """Beats up to BEAT_GAP apart are one unbroken watch; a longer gap (a stall, an
    outage without an error) is not: the others get a staleness from its end."""
    elapsed, sightings, found = _watching(db, "quiet")
    other = _node("quiet")
    sightings.beaten()
    assert found() == []
    for _ in range(int(STALE_AFTER / BEAT_GAP)):
        elapsed.advance(BEAT_GAP)
        sightings.beaten()
    assert found() == [other.id], "an unbroken watch: silent a staleness"

    elapsed.advance(BEAT_GAP + 1)
    sightings.beaten()
    assert found() == [], "the watch began again"


def test_silence_does_not_count_while_this_process_is_cut_off(db: StoreDb) -> None:
    """Between the database coming back and this process's own heartbeat committing again
    (a read can come first: the worker looks for gone processes on its own schedule), the
    others had no more chance to beat than this process: none is found gone."""
    elapsed, sightings, found = _watching(db, "cut-off-too")

    sightings.beaten()
    assert found(NOW) == []
    sightings.failed()  # the outage
    elapsed.advance(STALE_AFTER * 6)
    assert found(NOW + STALE_AFTER * 6) == [], "this process has not beaten since"


def test_silence_does_not_count_while_this_process_has_not_beaten_for_a_gap(
    db: StoreDb,
) -> None:
    """A stall of this process's own heartbeat with no error (a write hanging on a cut
    connection) is a break too, before the late heartbeat commits."""
    elapsed, sightings, found = _watching(db, "stalled-with-me")

    sightings.beaten()
    assert found() == []
    elapsed.advance(STALE_AFTER * 6)
    assert found() == [], "this process's own heartbeat has not committed for a minute"
