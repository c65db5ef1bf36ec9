"""Which cores the server side and the load generator run on.

The figures compare systems "with the server side on one core, the load
generator on the other": every process a system under test starts (API server,
queue worker, consumer) is pinned to the first core this benchmark may use, the
load generator to the others. On one shared core a process the clients wake
does not preempt the server, so the figures move less between runs, and no
system gets a second core the others do not. The broker (Redis) is a machine
service and is not pinned. ``BENCH_PIN=0`` turns pinning off, and so does a
machine with one core. The benchmarks start no threads, so a ``preexec_fn`` is safe.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["pin_load", "pin_server"]

_CPUS = sorted(os.sched_getaffinity(0))
_PINNED = os.environ.get("BENCH_PIN", "1") != "0" and len(_CPUS) >= 2


def _pinning(cpus: set[int]) -> Callable[[], None] | None:
    return (lambda: os.sched_setaffinity(0, cpus)) if _PINNED else None


pin_server = _pinning({_CPUS[0]})
"""A ``preexec_fn`` that keeps a server-side process (and its threads) on its core."""
pin_load = _pinning(set(_CPUS[1:]))
"""A ``preexec_fn`` that keeps the load generator off the server's core."""
