"""CPU time the server process spends per request: a durable check-in (API-only node), the
same with a ``job_history_id`` in every report ("ids": each is looked up for a repeat, as
with an Idempotency-Key), a completion end to end (check-in and a synchronous no-op
handler in one process), and the raw Starlette echo, under the same load (64 keep-alive
clients), with how many writes each of jobhooks' store transactions carried (from
``/metrics``). The echo is measured under uvicorn's own HTTP protocol and under jobhooks'
(answers in one write): the second is what HTTP costs a jobhooks server.

Throughput on a shared 2-core machine moves by 20-40 % from one run to the next; the
server's own CPU time per request (user + system, read from ``/proc``) moves far less,
so a change to the hot path is best judged by it. With ``--against SRC`` the jobhooks
figures of another checkout's ``src`` are measured too, rounds alternated.

Usage: ``python bench/cpu_bench.py [--n 20000] [--rounds 3] [--against OTHER/src]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from baselines import _load, _wait_done, make_bodies, wait_idle  # noqa: E402
from jobhooks_bench import (  # noqa: E402
    JobhooksCompletions,
    echo_server,
    jobhooks_server,
    source_tree,
)

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def _per_request(pid: int, n: int, run: Callable[[], float]) -> tuple[float, float]:
    """(µs of the process's CPU per request, requests/s) for ``run``, which sends ``n``
    requests and returns the requests/s it measured."""
    before = _cpu_s(pid)
    rate = run()
    return (_cpu_s(pid) - before) / n * 1e6, rate


def _grouped(url: str) -> tuple[float, float] | None:
    """(commits, writes) of a jobhooks server's store so far, from its ``/metrics`` (None
    from a tree that does not export them)."""
    text = httpx.get(url.split("/api/", 1)[0] + "/metrics").text
    values = {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in text.splitlines())
        if name in ("jobhooks_store_commits_total", "jobhooks_store_writes_total")
    }
    if len(values) < 2:
        return None
    return values["jobhooks_store_commits_total"], values["jobhooks_store_writes_total"]


def _per_request_grouped(
    url: str, pid: int, n: int, run: Callable[[], float]
) -> tuple[float, float, float | None]:
    """:func:`_per_request`, and the writes per commit of the store meanwhile."""
    before = _grouped(url)
    cpu, rate = _per_request(pid, n, run)
    after = _grouped(url)
    if before is None or after is None:
        return cpu, rate, None
    return cpu, rate, (after[1] - before[1]) / max(after[0] - before[0], 1)


def checkin(n: int, history_ids: bool = False) -> tuple[float, float, float | None]:
    with jobhooks_server("Noop", worker=False) as (url, headers, _db, proc):
        _load(url, make_bodies(1000, history_ids=history_ids), 64, headers=headers)
        bodies = make_bodies(n, history_ids=history_ids)
        return _per_request_grouped(
            url,
            proc.popen.pid,
            n,
            lambda: _load(url, bodies, 64, headers=headers).throughput,
        )


def end_to_end(n: int) -> tuple[float, float, float | None]:
    with jobhooks_server("SyncNoop") as (url, headers, database, proc):
        done = JobhooksCompletions(database)
        _load(url, make_bodies(1000), 64, headers=headers)
        _wait_done(done, 1000, (proc,))
        done.reset()

        def run() -> float:
            result = _load(url, make_bodies(n), 64, headers=headers)
            return n / (_wait_done(done, n, (proc,)) - result.started_at)

        return _per_request_grouped(url, proc.popen.pid, n, run)


def echo(n: int, one_write: bool = False) -> tuple[float, float, None]:
    with echo_server(one_write) as (url, pid):
        _load(url, make_bodies(1000), 64)
        return (*_per_request(pid, n, lambda: _load(url, make_bodies(n), 64).throughput), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", help="another checkout's src folder")
    parser.add_argument("--wait-idle", type=float, default=30.0)
    args = parser.parse_args(argv)
    if not wait_idle(args.wait_idle):
        print("warning: the machine did not go idle; figures may be disturbed", file=sys.stderr)
    trees = {"this": None, **({"other": args.against} if args.against else {})}
    figures: dict[str, list[tuple[float, float, float | None]]] = {}
    for _ in range(args.rounds):
        figures.setdefault("echo", []).append(echo(args.n))
        figures.setdefault("echo (one write)", []).append(echo(args.n, one_write=True))
        for tree, src in trees.items():
            with source_tree(src):
                figures.setdefault(f"check-in ({tree})", []).append(checkin(args.n))
                figures.setdefault(f"check-in, ids ({tree})", []).append(
                    checkin(args.n, history_ids=True)
                )
                figures.setdefault(f"end to end ({tree})", []).append(end_to_end(args.n // 2))
    for name, rounds in figures.items():
        cpu = statistics.median(c for c, _, _ in rounds)
        rate = statistics.median(r for _, r, _ in rounds)
        spread = " · ".join(f"{c:.0f}" for c, _, _ in rounds)
        groups = [g for _, _, g in rounds if g is not None]
        grouped = f"; {statistics.median(groups):.1f} writes per commit" if groups else ""
        print(f"{name:22} {cpu:6.1f} µs CPU per request ({spread}); {rate:,.0f}/s{grouped}")
    return 0


if __name__ == "__main__":
    start = time.monotonic()
    code = main()
    print(f"({time.monotonic() - start:.0f} s)", file=sys.stderr)
    sys.exit(code)
