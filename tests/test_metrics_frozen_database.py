"""/metrics while the database does not answer: the node's own figures still come in time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from support.app import TestClient
from support.server import write_config

from jobhooks import metrics as metrics_module
from jobhooks.metrics import Metrics
from jobhooks.registry import load
from jobhooks.service.runtime import Runtime
from jobhooks.web import create_app

PROMETHEUS_SCRAPE_TIMEOUT = 10.0
"""Prometheus's default ``scrape_timeout``: a scrape that answers later is lost whole."""


class FrozenDatabase:
    """A read of the database that does not answer until :meth:`thaw` (a frozen server,
    a lock held elsewhere); counts how many reads were started."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.started = 0
        self._thawed = threading.Event()

    def read(self) -> object:
        self.started += 1
        self._thawed.wait()
        return self.value

    def thaw(self) -> None:
        self._thawed.set()


def _scrape_within(scrape: object, limit: float) -> tuple[str | None, float]:
    """Run ``scrape()`` on a thread; its text, or None when it had not answered within
    ``limit`` seconds, and how long it took."""
    answer: list[str] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: answer.append(scrape()), daemon=True)  # type: ignore[operator]
    thread.start()
    thread.join(limit)
    return (answer[0] if answer else None), time.monotonic() - started


@pytest.fixture
def frozen() -> Iterator[FrozenDatabase]:
    database = FrozenDatabase((7, 42.0))
    try:
        yield database
    finally:
        database.thaw()


def test_a_scrape_while_the_database_does_not_answer_keeps_the_nodes_own_metrics(
    frozen: FrozenDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the backlog gauge's read held the scrape for the database's deadline (30 s
    on PostgreSQL, 10 s per read on a locked SQLite file), past Prometheus's scrape
    timeout: the node's every metric (the 503s it answered included) was lost while the
    database was down."""
    monkeypatch.setattr(metrics_module, "READ_WAIT", 0.2, raising=False)
    metrics = Metrics(frozen.read)  # type: ignore[arg-type]
    metrics.rejected.labels("503").inc(3)

    text, took = _scrape_within(lambda: generate_latest(metrics.registry).decode(), 5.0)

    assert text is not None, "the scrape had not answered after 5 s"
    assert took < 2.0
    assert 'jobhooks_rejected_requests_total{status="503"} 3.0' in text
    assert "jobhooks_runs_pending" not in text  # not known: left out, never a made-up 0


def test_scrapes_of_a_database_that_does_not_answer_do_not_pile_up_reads(
    frozen: FrozenDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_module, "READ_WAIT", 0.05, raising=False)
    metrics = Metrics(frozen.read)  # type: ignore[arg-type]

    answers = [
        _scrape_within(lambda: generate_latest(metrics.registry).decode(), 5.0)[0] for _ in range(3)
    ]
    assert all(answer is not None for answer in answers)
    assert frozen.started == 1, "each scrape started a read of its own on the frozen database"

    frozen.thaw()
    deadline = time.monotonic() + 5
    text = ""
    while "jobhooks_runs_pending" not in text and time.monotonic() < deadline:
        text = generate_latest(metrics.registry).decode()
    assert "jobhooks_runs_pending 7.0" in text  # the database answers again: the gauges are back
    assert "jobhooks_oldest_pending_run_age_seconds 42.0" in text


def test_metrics_endpoint_answers_within_the_scrape_timeout_when_the_database_is_frozen(
    tmp_path: Path, frozen: FrozenDatabase
) -> None:
    """Through the HTTP endpoint, at the default wait: the backlog and the held runs are
    both read from the database, and the two waits together stay within Prometheus's
    default scrape timeout."""
    config = write_config(
        tmp_path,
        """
        [[handlers]]
        name = "logit"
        type = "log"
        job_types = "*"
        """,
    )
    runtime = Runtime(load(config), config, with_worker=False)
    held = FrozenDatabase(0)
    try:
        runtime.metrics = Metrics(frozen.read)  # type: ignore[arg-type]
        runtime.metrics.watch_registrations(lambda: [], held.read)  # type: ignore[arg-type]
        runtime.metrics.rejected.labels("503").inc()
        with TestClient(create_app(runtime)) as client:
            text, took = _scrape_within(lambda: client.get("/metrics").text, 30.0)
    finally:
        held.thaw()

    assert text is not None and took < PROMETHEUS_SCRAPE_TIMEOUT - 2, f"answered after {took:.1f} s"
    assert "process_cpu_seconds_total" in text
    assert 'jobhooks_rejected_requests_total{status="503"} 1.0' in text
    assert "jobhooks_runs_pending" not in text and "jobhooks_runs_held" not in text
