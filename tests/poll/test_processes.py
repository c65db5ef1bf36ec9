"""Real processes: a poll killed with SIGKILL between pages, and two polling nodes sharing
PostgreSQL. No run is missed, none is stored twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pg import PostgresServer
from sqlalchemy import create_engine, text
from support.keyfactor import past, platform_env
from support.server import child_env, wait_for

from .conftest import Platform, history_ids

FAILURE = 4


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m jobhooks.cli ARGS``; SIGKILLed by its PID if still running at the end."""
    with log.open("ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "jobhooks.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(**env),
            start_new_session=True,
        )
    try:
        yield child
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(10)


class BlockPage:
    """Holds the ``at``-th page request (3 rows) until released; adds rows at the second."""

    def __init__(self, platform: Platform, at: int) -> None:
        self.platform = platform
        self.at = at
        self.seen = 0
        self.reached = threading.Event()
        self.release = threading.Event()
        self.arrived: list[int] = []

    def __call__(self, query: dict[str, str]) -> None:
        page_request = query.get("pq.returnLimit") == "3"  # not the search for the start
        if not page_request or "JobHistoryId -gt" not in query.get("pq.queryString", ""):
            return
        self.seen += 1
        if self.seen == 2:
            self.arrived.extend(self.platform.fake.add(result=FAILURE) for _ in range(3))
        if self.seen == self.at:
            self.reached.set()
            self.release.wait(15)


def test_a_poll_killed_between_pages_resumes_where_its_last_commit_left(
    platform: Platform, tmp_path: Path
) -> None:
    fake = platform.fake
    for _ in range(5):
        fake.add(at=past(7200))
    expected = [fake.add(result=FAILURE, at=past(60)) for _ in range(15)]
    running = [fake.start_run(at=past(30)) for _ in range(2)]
    config = platform.write_config(
        poll=f'page_size = 3\nlease = 1\nstart = "{past(3600).isoformat()}"'
    )
    block = BlockPage(platform, at=6)
    fake.hooks.append(block)
    env = platform_env(fake)
    with process(["poll", "--once", "--config", str(config)], env, tmp_path / "first.log") as first:
        assert block.reached.wait(30), (tmp_path / "first.log").read_text()
        time.sleep(0.3)  # the pages read before it commit meanwhile
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    block.release.set()
    fake.hooks.clear()
    partial = history_ids(platform.completions())
    assert 1 <= len(partial) < len(expected), "killed part-way, after a commit"
    assert len(partial) == len(set(partial))
    for identifier in running:
        fake.finish(identifier, result=FAILURE)
    expected += [*block.arrived, *running, fake.add(result=FAILURE)]
    with process(["poll", "--once", "--config", str(config)], env, tmp_path / "again.log") as again:
        assert again.wait(30) == 0, (tmp_path / "again.log").read_text()
    assert history_ids(platform.completions()) == sorted(expected)


def _pids_polling(database: str) -> str | None:
    engine = create_engine("postgresql+psycopg://" + database.removeprefix("postgresql://"))
    try:
        with engine.connect() as connection:
            owner = connection.execute(text("SELECT owner FROM poll_state")).scalar()
    finally:
        engine.dispose()
    return owner


def test_two_nodes_on_postgresql_store_every_run_exactly_once(
    platform: Platform, pg_server: PostgresServer, pg_database: str, tmp_path: Path
) -> None:
    fake = platform.fake
    config = platform.write_config(
        poll="interval = 0.2\nlease = 1.5\npage_size = 5", database=pg_database
    )
    env = platform_env(fake)
    expected: list[int] = []
    stop = threading.Event()

    def orchestrators() -> None:
        while not stop.is_set():
            expected.append(fake.add(result=FAILURE))
            time.sleep(0.02)

    feeder = threading.Thread(target=orchestrators, daemon=True)
    with (
        process(["worker", "--config", str(config)], env, tmp_path / "node-a.log") as node_a,
        process(["worker", "--config", str(config)], env, tmp_path / "node-b.log") as node_b,
    ):
        owner = wait_for(lambda: _pids_polling(pg_database), 30, "a node to take the lease")
        feeder.start()
        time.sleep(1.5)
        leader = node_a if owner.split(":")[1] == str(node_a.pid) else node_b
        other = node_b if leader is node_a else node_a
        leader.send_signal(signal.SIGKILL)
        leader.wait(10)
        time.sleep(1.5)
        stop.set()
        feeder.join()
        wait_for(
            lambda: len(platform.completions(pg_database)) >= len(expected),
            20,
            f"the surviving node to catch up:\n{(tmp_path / 'node-a.log').read_text()[-2000:]}",
        )
        new_owner = _pids_polling(pg_database)
        assert new_owner is not None and new_owner.split(":")[1] == str(other.pid)
        other.send_signal(signal.SIGTERM)
        assert other.wait(15) == 0
    ids = history_ids(platform.completions(pg_database))
    repeated = [i for i, n in Counter(ids).items() if n > 1]
    assert repeated == [], "none twice"
    assert sorted(ids) == sorted(expected), "none missed"
    assert len(expected) > 40


def _owner(config_dir: Path) -> str | None:
    """Who holds the poller's lease in the SQLite database of a test's configuration."""
    path = config_dir / "data" / "jobhooks.db"
    if not path.exists():
        return None
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT owner FROM poll_state")).scalar()
    except Exception:
        return None  # not created yet
    finally:
        engine.dispose()


def test_a_restarted_polling_node_polls_again_at_once(platform: Platform, tmp_path: Path) -> None:
    """The poller's lease lasts [poll] lease (60 s here); a node restarted after a SIGKILL
    takes it back at once, since the process that held it is gone."""
    fake = platform.fake
    config = platform.write_config(poll="interval = 0.2\nlease = 60")
    env = platform_env(fake)
    with process(["worker", "--config", str(config)], env, tmp_path / "first.log") as first:
        owner = wait_for(lambda: _owner(platform.directory), 30, "the node to take the lease")
        assert owner.split(":")[1] == str(first.pid)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    after_the_kill = [fake.add(result=FAILURE) for _ in range(3)]
    with process(["worker", "--config", str(config)], env, tmp_path / "again.log") as again:
        restarted = time.monotonic()
        wait_for(
            lambda: set(after_the_kill) <= set(history_ids(platform.completions())),
            15,
            f"the restarted node to poll:\n{(tmp_path / 'again.log').read_text()[-2000:]}",
        )
        took = time.monotonic() - restarted
        owner = _owner(platform.directory)
        assert owner is not None and owner.split(":")[1] == str(again.pid)
    print(f"\nthe restarted node polled again {took:.1f} s after it started")
