"""Which cores the server side and the load generator run on.

The figures compare systems "with the server side on one core, the load
generator on the other": every process a system under test starts (API server,
queue worker, consumer) is pinned to the first core this benchmark may use, the
load generator to the others. On one shared core a process the clients wake
does not preempt the server, so the figures move less between runs, and no
system gets a second core the others do not. The broker (Redis) is a machine
service and is not pinned. ``BENCH_PIN=0`` turns pinning off.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["LOAD_CPUS", "SERVER_CPUS", "pin_load", "pin_server"]


def _split() -> tuple[set[int] | None, set[int] | None]:
    if os.environ.get("BENCH_PIN", "1") == "0":
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


SERVER_CPUS, LOAD_CPUS = _split()


def _pinning(cpus: set[int] | None) -> Callable[[], None] | None:
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


pin_server = _pinning(SERVER_CPUS)
"""A ``preexec_fn`` that keeps a server-side process (and its threads) on its core."""
pin_load = _pinning(LOAD_CPUS)
"""A ``preexec_fn`` that keeps the load generator off the server's core."""
