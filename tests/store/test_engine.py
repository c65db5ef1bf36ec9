"""Connecting to the database: a PostgreSQL server that never answers is given up after a
bounded wait, with an error that says so, instead of holding the process for ever."""

from __future__ import annotations

import threading
import time

import pytest
from support.faults import SilentServer

from jobhooks.errors import StoreError
from jobhooks.store import engine
from jobhooks.store.database import open_database


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
