"""Prometheus metrics, in a registry of each app's own (nothing global)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Metrics"]


_M = TypeVar("_M", Counter, Histogram)
_T = TypeVar("_T")

READ_WAIT = 2.5
"""Seconds a scrape waits for each figure it reads from the database (the backlog, the
held runs). A database that does not answer (a frozen server, a lock) would otherwise
hold the scrape for its whole deadline, 30 s, past Prometheus's scrape timeout (10 s by
default), and every metric of the node would be lost while it is most wanted: the figure
is left out of that scrape instead, and the others are exported."""


class _Bounded(Generic[_T]):
    """A read from the database, made on a thread of its own and waited for at most
    :data:`READ_WAIT` seconds (raising :class:`TimeoutError` past it). While one is still
    under way, later scrapes wait for it rather than start another: scrapes of a database
    that does not answer never pile up threads."""

    def __init__(self, read: Callable[[], _T]) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._pending: Future[_T] | None = None

    def __call__(self) -> _T:
        with self._lock:
            pending = self._pending
            if pending is None or pending.done():
                pending = self._pending = Future()
                threading.Thread(
                    target=self._run, args=(pending,), name="jobhooks-metrics-read", daemon=True
                ).start()
        return pending.result(timeout=READ_WAIT)

    def _run(self, future: Future[_T]) -> None:
        try:
            future.set_result(self._read())
        except BaseException as exc:  # handed to the scrape, which leaves the figure out
            future.set_exception(exc)


def _child(children: dict[tuple[object, ...], Any], metric: _M, *labels: str) -> _M:
    """``metric.labels(*labels)``, kept: labels() takes a lock and checks the names on
    every call, and the hot paths count every check-in and every attempt."""
    key = (id(metric), *labels)
    child = children.get(key)
    if child is None:
        child = children[key] = metric.labels(*labels)
    return child


class _BacklogCollector(Collector):
    def __init__(self, read_backlog: Callable[[], tuple[int, float]]) -> None:
        self._read = read_backlog

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            pending, oldest = self._read()
        except Exception:
            return
        yield GaugeMetricFamily(
            "jobhooks_runs_pending",
            "Handler runs waiting to run (pending or awaiting a retry).",
            value=pending,
        )
        yield GaugeMetricFamily(
            "jobhooks_oldest_pending_run_age_seconds",
            "Age of the oldest handler run still waiting.",
            value=oldest,
        )


class Metrics:
    """The metrics one jobhooks process exports at /metrics."""

    def __init__(self, read_backlog: Callable[[], tuple[int, float]] | None = None) -> None:
        self.registry = CollectorRegistry()
        # The process's CPU time, memory and the cyclic collector's passes, under their
        # usual names (process_*, python_gc_*): CPU per check-in is rate(CPU) / rate(stored).
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.completions = Counter(
            "jobhooks_completions",
            "Completion reports stored, by job result and source.",
            ["result", "source"],
            registry=self.registry,
        )
        self._children: dict[tuple[object, ...], Any] = {}
        self.duplicates = Counter(
            "jobhooks_duplicate_completions",
            "Completion reports that repeated a stored one (answered, not stored again).",
            registry=self.registry,
        )
        self.rejected = Counter(
            "jobhooks_rejected_requests",
            "Check-in requests refused, by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.runs = Counter(
            "jobhooks_handler_runs",
            "Attempts finished, by handler and the run's status after them.",
            ["handler", "status"],
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "jobhooks_handler_run_duration_seconds",
            "How long handler attempts took.",
            ["handler"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.dispatch_latency = Histogram(
            "jobhooks_dispatch_latency_seconds",
            "From a run's commit to its handler's start.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30),
            registry=self.registry,
        )
        self.poll_rows = Counter(
            "jobhooks_poll_rows_read",
            "Job history rows read from the platform (pull mode).",
            registry=self.registry,
        )
        self.poll_completions = Counter(
            "jobhooks_poll_completions",
            "Completions created from the platform's job history, by job result.",
            ["result"],
            registry=self.registry,
        )
        self.poll_errors = Counter(
            "jobhooks_poll_errors",
            "Failed polls and malformed rows, by kind (unreachable, timeout, unauthorized, "
            "forbidden, server_error, client_error, bad_response, malformed_row, store).",
            ["kind"],
            registry=self.registry,
        )
        self.started = time.time()
        if read_backlog is not None:
            self.registry.register(_BacklogCollector(_Bounded(read_backlog)))

    def count_completions(self, result: str, source: str, count: int = 1) -> None:
        """Count stored completions of one result from one source (check-in or poll)."""
        _child(self._children, self.completions, result, source).inc(count)

    def count_attempt(self, handler: str, status: str, duration: float) -> None:
        """Count one finished attempt of ``handler`` (the run's ``status`` after it)."""
        _child(self._children, self.runs, handler, status).inc()
        _child(self._children, self.run_duration, handler).observe(duration)

    def watch_registrations(
        self,
        problems: Callable[[], Iterable[tuple[str, str, int]]],
        held: Callable[[], int],
    ) -> None:
        """Export the registrations with problems, as (name, ``quarantined`` or ``kept``,
        how many problems), and how many runs are held for the quarantined ones."""
        self.registry.register(_RegistrationsCollector(problems, _Bounded(held)))

    def watch_store(self, grouped: Callable[[], tuple[int, int]]) -> None:
        """Export the store's group commit: ``grouped`` returns how many transactions the
        writer committed and how many writes they carried."""
        self.registry.register(_StoreCollector(grouped))

    def watch_poller(self, lag: Callable[[], float | None], polling: Callable[[], bool]) -> None:
        """Export the poller's lag and whether this node polls (pull mode)."""
        self.registry.register(_PollerCollector(lag, polling))


class _StoreCollector(Collector):
    def __init__(self, grouped: Callable[[], tuple[int, int]]) -> None:
        self._grouped = grouped

    def collect(self) -> Iterator[CounterMetricFamily]:
        commits, writes = self._grouped()
        yield CounterMetricFamily(
            "jobhooks_store_commits",
            "Transactions the store's writer committed (each one fsync on SQLite).",
            value=commits,
        )
        yield CounterMetricFamily(
            "jobhooks_store_writes",
            "Writes (check-ins, outcomes, claims, ...) those transactions carried: divided "
            "by the commits, how well writes are grouped.",
            value=writes,
        )


class _PollerCollector(Collector):
    def __init__(self, lag: Callable[[], float | None], polling: Callable[[], bool]) -> None:
        self._lag = lag
        self._polling = polling

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = self._lag()
        if lag is not None:
            yield GaugeMetricFamily(
                "jobhooks_poll_lag_seconds",
                "Seconds since the start of the last poll that read the job history to its end.",
                value=lag,
            )
        yield GaugeMetricFamily(
            "jobhooks_poll_leader",
            "1 while this node holds the poller's lease and polls, 0 otherwise.",
            value=1 if self._polling() else 0,
        )


class _RegistrationsCollector(Collector):
    def __init__(
        self, problems: Callable[[], Iterable[tuple[str, str, int]]], held: Callable[[], int]
    ) -> None:
        self._problems = problems
        self._held = held

    def collect(self) -> Iterator[GaugeMetricFamily]:
        entries = list(self._problems())
        yield GaugeMetricFamily(
            "jobhooks_registrations_quarantined",
            "Registrations with problems that do not run (their completions get held runs).",
            value=sum(1 for _name, state, _count in entries if state == "quarantined"),
        )
        family = GaugeMetricFamily(
            "jobhooks_registration_problems",
            "Problems of each registration that is quarantined, or kept at its last good "
            "version by a reload.",
            labels=["registration", "state"],
        )
        for name, state, count in entries:
            family.add_metric([name, state], count)
        yield family
        try:
            held = self._held()
        except Exception:
            return
        yield GaugeMetricFamily(
            "jobhooks_runs_held",
            "Handler runs held for a quarantined registration (they run once it is fixed).",
            value=held,
        )
