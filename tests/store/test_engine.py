"""Connecting to the database: a PostgreSQL server that never answers, or whose host
vanished under an open connection, is given up after a bounded wait, with an error that
says so, instead of holding the process for ever (or for the kernel's quarter of an hour)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from support.faults import SilentServer
from support.network import Relay

from jobhooks.errors import StoreError
from jobhooks.store import Store, engine
from jobhooks.store.database import open_database

TESTS = Path(__file__).resolve().parents[1]


def _open_within(url: str, seconds: float) -> StoreError:
    """The error ``open_database(url)`` raises, failing the test when it takes longer than
    ``seconds`` (it is left waiting in a thread of its own until the server goes)."""
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            open_database(url)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert not thread.is_alive(), f"still waiting for the server after {seconds} s"
    assert len(errors) == 1 and isinstance(errors[0], StoreError), errors
    return errors[0]


def test_a_server_that_never_answers_is_given_up_after_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 1)
    with SilentServer() as silent:
        started = time.monotonic()
        error = _open_within(silent.url, 8)

    assert time.monotonic() - started >= 1
    assert str(error) == (
        f"cannot open the database {silent.url}: the database server did not answer in time "
        "(connect_timeout; a hung server or pooler, or a firewall dropping the connection)"
    )


def test_a_connect_timeout_in_the_url_wins_over_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 600)
    with SilentServer() as silent:
        error = _open_within(f"{silent.url}?connect_timeout=1", 8)

    assert "did not answer in time" in str(error)


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("connect_timeout=abc", "bad value for connect_timeout: 'abc'"),
        ("connect_timeout=2&connect_timeout=3", "bad value for connect_timeout"),
        ("keepalive=1", 'invalid connection option "keepalive"'),
        ("sslmode=bogus", 'invalid sslmode value: "bogus"'),
    ],
)
def test_a_setting_in_the_url_libpq_cannot_use_is_named(setting: str, said: str) -> None:
    url = f"postgresql://postgres@127.0.0.1:5432/test?{setting}"

    with pytest.raises(StoreError) as refused:
        open_database(url)

    assert str(refused.value).startswith(
        f"cannot open the database {url}: the database URL has a setting libpq cannot use ("
    )
    assert said in str(refused.value)


def _vanish(what: str, url: str) -> dict[str, Any]:
    """Run ``support.vanished_host`` ``what`` on the database ``url``; what it printed."""
    server = make_url(url)
    with tempfile.TemporaryDirectory(prefix="jh") as folder:
        socket_path = Path(folder, "pg.sock")
        relay = Relay.unix_to_tcp(socket_path, server.host or "127.0.0.1", server.port or 5432)
        try:
            child = subprocess.run(
                [sys.executable, "-m", "support.vanished_host", what, str(socket_path), url],
                cwd=TESTS,
                env={**os.environ, "PYTHONPATH": str(TESTS)},
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
            )
        finally:
            relay.close()
    assert child.returncode == 0, child.stderr[-3000:]
    answer: dict[str, Any] = json.loads(child.stdout.splitlines()[-1])
    return answer


def test_a_write_to_a_server_whose_host_vanished_is_answered_after_tcp_user_timeout(
    pg_database: str,
) -> None:
    """The database's host is powered off (or fails over to another machine) between two
    check-ins: nothing answers, not even a reset. The second check-in is answered "not
    stored" once what it sent went unacknowledged for ``tcp_user_timeout`` (2 s here),
    instead of after the kernel's retransmission timeout, about 15 minutes."""
    answer = _vanish("check-in", pg_database)

    # Not stored, said at once by the retry when asking the server what became of the
    # group took long and failed (see the gate test above).
    assert answer["error"] in ("StoreError", "DatabaseUnreachable"), answer
    assert answer["message"].startswith(
        "the database server cannot be reached or refused the connection"
    )
    assert 2 <= answer["seconds"] < 20, answer


def test_a_node_listening_for_announcements_notices_a_vanished_host_and_hears_again(
    pg_database: str,
) -> None:
    """A connection that only listens (wake-ups, reload announcements) sends nothing, so
    without keepalive probes it would wait on a vanished host for ever and the node would
    miss every reload announced after a failover. It notices within a few seconds (a
    1 s idle probe here), and once the host is back an announcement reaches it again."""
    answer = _vanish("listen", pg_database)

    assert answer["noticed"] < 20, answer
    assert answer["heard"] == "after the outage"


def test_a_postgresql_database_that_does_not_exist_is_named_so_not_unreachable(
    pg_database: str,
) -> None:
    """Dropped (or a typo in the URL): the server answers, the database is not there."""
    missing = str(make_url(pg_database).set(database=f"gone_{os.getpid()}"))
    with pytest.raises(StoreError) as refused:
        Store(missing)
    message = str(refused.value)
    assert "the database named in the URL does not exist on the server" in message
    assert "cannot be reached" not in message
