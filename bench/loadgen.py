"""HTTP/1.1 keep-alive load generator for POST endpoints.

Closed loop (``rate=None``): ``concurrency`` connections each send the next request as
soon as the previous response is complete. Open loop (``rate`` in requests/s): requests
are released on a fixed schedule and sent over a pool of ``concurrency`` connections;
latency is then measured from the scheduled send time, so queueing inside the client
when every connection is busy counts against the server (no coordinated omission).

Run it in its own process (``run_load_subprocess`` or the CLI) so that it does not
share an interpreter with the server under test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cores import pin_load  # beside this file: on the path of its importers and as a script

__all__ = [
    "LoadResult",
    "ProtocolError",
    "run_load",
    "run_load_async",
    "run_load_subprocess",
]

_CONNECT_RETRY_DELAY_S = 0.01


class ProtocolError(Exception):
    """The server sent something that is not a valid HTTP/1.x response."""


@dataclass
class LoadResult:
    """Outcome of one load run; times are in seconds, latencies in milliseconds."""

    elapsed_s: float
    count: int
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0
    retried: int = 0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the latencies (``q`` in 0..100); NaN if none."""
        if not self.latencies_ms:
            return math.nan
        ordered = sorted(self.latencies_ms)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[min(rank, len(ordered)) - 1]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p90(self) -> float:
        return self.percentile(90)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def max_ms(self) -> float:
        return max(self.latencies_ms, default=math.nan)

    @property
    def throughput(self) -> float:
        """Responses per second over the whole run."""
        return self.count / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def summary(self) -> dict[str, Any]:
        """Headline figures as a JSON-ready dict (latency figures are None if no response)."""
        return {
            "count": self.count,
            "errors": self.error_count,
            "retried": self.retried,
            "elapsed_s": round(self.elapsed_s, 4),
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": _round(self.p50),
            "p90_ms": _round(self.p90),
            "p99_ms": _round(self.p99),
            "max_ms": _round(self.max_ms),
        }

    def to_json(self, *, latencies: bool = True) -> dict[str, Any]:
        """Full result as a JSON-ready dict; ``from_json`` reverses it."""
        data: dict[str, Any] = {
            **self.summary(),
            "elapsed_s": self.elapsed_s,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "error_kinds": dict(self.errors),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if latencies:
            data["latencies_ms"] = [round(x, 4) for x in self.latencies_ms]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadResult:
        return cls(
            elapsed_s=float(data["elapsed_s"]),
            count=int(data["count"]),
            statuses=Counter({int(k): int(v) for k, v in data["statuses"].items()}),
            errors=Counter({str(k): int(v) for k, v in data.get("error_kinds", {}).items()}),
            latencies_ms=[float(x) for x in data.get("latencies_ms", [])],
            started_at=float(data.get("started_at", 0.0)),
            finished_at=float(data.get("finished_at", 0.0)),
            retried=int(data.get("retried", 0)),
        )


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    path: str


def _parse_url(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"only http:// URLs are supported, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return _Target(parts.hostname, parts.port or 80, path)


def _build_requests(
    target: _Target, bodies: Sequence[bytes], headers: dict[str, str]
) -> list[bytes]:
    names = {k.lower() for k in headers}
    fixed = [f"POST {target.path} HTTP/1.1"]
    if "host" not in names:
        host = target.host if target.port == 80 else f"{target.host}:{target.port}"
        fixed.append(f"Host: {host}")
    if "content-type" not in names:
        fixed.append("Content-Type: application/json")
    fixed.extend(f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-length")
    head = "\r\n".join(fixed).encode("latin-1")
    return [head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body for body in bodies]


class _Connection:
    """One keep-alive HTTP/1.1 connection; one request in flight at a time."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, target: _Target) -> _Connection:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        return cls(reader, writer)

    def close(self) -> None:
        self.writer.close()

    async def request(self, raw: bytes) -> tuple[int, bool]:
        """Send ``raw`` and read the full response; returns (status, keep_alive)."""
        self.writer.write(raw)
        reader = self.reader
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            status, keep_alive, length, chunked = _parse_head(head)
            if 100 <= status < 200:
                continue
            break
        if status in (204, 304):
            pass
        elif chunked:
            await _read_chunked(reader)
        elif length is not None:
            if length:
                await reader.readexactly(length)
        else:
            await reader.read()
            keep_alive = False
        return status, keep_alive


def _parse_head(head: bytes) -> tuple[int, bool, int | None, bool]:
    lines = head.split(b"\r\n")
    status_line = lines[0]
    if not status_line.startswith(b"HTTP/1.") or len(status_line) < 12:
        raise ProtocolError(f"bad status line {status_line[:80]!r}")
    try:
        status = int(status_line[9:12])
    except ValueError:
        raise ProtocolError(f"bad status line {status_line[:80]!r}") from None
    keep_alive = status_line[7:8] == b"1"
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:80]!r}")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding":
            chunked = value.strip().lower().endswith(b"chunked")
        elif name == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            if b"close" in tokens:
                keep_alive = False
            elif b"keep-alive" in tokens:
                keep_alive = True
    return status, keep_alive, length, chunked


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size line {line[:80]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return
        await reader.readexactly(size + 2)


_REQUEST_ERRORS = (
    OSError,
    EOFError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    TimeoutError,
    ProtocolError,
    ValueError,
)


class _Run:
    """Shared state of one load run."""

    def __init__(self, target: _Target, requests: list[bytes], n: int, timeout_s: float) -> None:
        self.target = target
        self.requests = requests
        self.n = n
        self.timeout_s = timeout_s
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.retried = 0
        self.last_done = 0.0

    async def one(self, conn: _Connection | None, index: int, t_start: float) -> _Connection | None:
        """Send request ``index`` (opening a connection if needed); returns the connection
        to reuse, or None if it was closed. A reused connection that fails before any
        response byte (stale keep-alive) is retried once on a fresh connection; such
        retries are counted in ``retried``."""
        raw = self.requests[index % len(self.requests)]
        for attempt in (0, 1):
            fresh = conn is None
            try:
                async with asyncio.timeout(self.timeout_s):
                    if conn is None:
                        conn = await _Connection.open(self.target)
                    status, keep_alive = await conn.request(raw)
            except _REQUEST_ERRORS as exc:
                stale = (
                    not fresh
                    and attempt == 0
                    and isinstance(exc, asyncio.IncompleteReadError | ConnectionError)
                    and (not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial)
                )
                if conn is not None:
                    conn.close()
                conn = None
                if stale:
                    self.retried += 1
                    continue
                self.errors[type(exc).__name__] += 1
                if fresh:
                    await asyncio.sleep(_CONNECT_RETRY_DELAY_S)
                return None
            now = time.perf_counter()
            self.latencies.append((now - t_start) * 1000.0)
            self.statuses[status] += 1
            self.last_done = now
            if not keep_alive:
                conn.close()
                return None
            return conn
        return None

    async def closed_loop(self, concurrency: int) -> None:
        next_index = 0

        def take() -> int | None:
            nonlocal next_index
            if next_index >= self.n:
                return None
            next_index += 1
            return next_index - 1

        async def worker() -> None:
            conn: _Connection | None = None
            while (index := take()) is not None:
                conn = await self.one(conn, index, time.perf_counter())
            if conn is not None:
                conn.close()

        await asyncio.gather(*(worker() for _ in range(min(concurrency, self.n))))

    async def open_loop(self, concurrency: int, rate: float, t0: float) -> None:
        queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
        interval = 1.0 / rate

        async def pacer() -> None:
            index = 0
            while index < self.n:
                now = time.perf_counter()
                due = min(self.n, int((now - t0) / interval) + 1)
                while index < due:
                    queue.put_nowait((index, t0 + index * interval))
                    index += 1
                if index < self.n:
                    await asyncio.sleep(max(0.0, t0 + index * interval - time.perf_counter()))
            for _ in range(concurrency):
                queue.put_nowait(None)

        async def worker() -> None:
            conn: _Connection | None = None
            while (item := await queue.get()) is not None:
                conn = await self.one(conn, item[0], item[1])
            if conn is not None:
                conn.close()

        await asyncio.gather(pacer(), *(worker() for _ in range(concurrency)))


async def run_load_async(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    headers: dict[str, str] | None = None,
    rate: float | None = None,
    *,
    n: int | None = None,
    timeout_s: float = 30.0,
) -> LoadResult:
    """Coroutine form of ``run_load``."""
    if not bodies:
        raise ValueError("at least one body is required")
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if rate is not None and rate <= 0:
        raise ValueError("rate must be > 0")
    total = len(bodies) if n is None else n
    run = _Run(
        _parse_url(url), _build_requests(_parse_url(url), bodies, headers or {}), total, timeout_s
    )
    started_at = time.time()
    t0 = time.perf_counter()
    if total > 0:
        if rate is None:
            await run.closed_loop(concurrency)
        else:
            await run.open_loop(concurrency, rate, t0)
    t_end = run.last_done or time.perf_counter()
    return LoadResult(
        elapsed_s=t_end - t0,
        count=sum(run.statuses.values()),
        statuses=run.statuses,
        errors=run.errors,
        latencies_ms=run.latencies,
        started_at=started_at,
        finished_at=started_at + (t_end - t0),
        retried=run.retried,
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_load(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    headers: dict[str, str] | None = None,
    rate: float | None = None,
    *,
    n: int | None = None,
    timeout_s: float = 30.0,
) -> LoadResult:
    """POST ``n`` requests (default ``len(bodies)``, cycling through ``bodies``) to ``url``.

    ``rate=None`` runs a closed loop over ``concurrency`` keep-alive connections;
    a rate (requests/s) paces the sends as an open loop. Each request is bounded by
    ``timeout_s``; failures are counted in ``LoadResult.errors``, never raised.
    Uses uvloop when installed. Must not be called from a running event loop.
    """
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(
            run_load_async(url, bodies, concurrency, headers, rate, n=n, timeout_s=timeout_s)
        )


def run_load_subprocess(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    headers: dict[str, str] | None = None,
    rate: float | None = None,
    *,
    n: int | None = None,
    timeout_s: float = 30.0,
    python: str = sys.executable,
    deadline_s: float = 300.0,
) -> LoadResult:
    """``run_load`` in a separate interpreter (this file run as a script), off the server's
    core (see ``cores``).

    Bodies travel one per line, so none may contain a CR or LF byte (compact JSON never
    does). The child is killed if it has not finished within ``deadline_s``.
    """
    if any(b"\n" in body or b"\r" in body for body in bodies):
        raise ValueError("bodies must not contain CR or LF bytes")
    with tempfile.NamedTemporaryFile("wb", suffix=".bodies", delete=False) as fh:
        fh.write(b"\n".join(bodies) + b"\n")
        body_path = fh.name
    try:
        cmd = [
            python,
            str(Path(__file__).resolve()),
            "--url",
            url,
            "--body-lines",
            body_path,
            "--concurrency",
            str(concurrency),
            "--timeout",
            str(timeout_s),
            "--latencies",
        ]
        if n is not None:
            cmd += ["--n", str(n)]
        if rate is not None:
            cmd += ["--rate", repr(rate)]
        for key, value in (headers or {}).items():
            cmd += ["--header", f"{key}: {value}"]
        proc = subprocess.run(
            cmd, capture_output=True, timeout=deadline_s, check=False, preexec_fn=pin_load
        )
    finally:
        os.unlink(body_path)
    if proc.returncode != 0:
        raise RuntimeError(
            f"load generator exited with {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace')[-2000:]}"
        )
    return LoadResult.from_json(json.loads(proc.stdout))


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--body-file", type=Path, help="the whole file is the request body")
    source.add_argument("--body-lines", type=Path, help="one request body per non-empty line")
    parser.add_argument(
        "--n", type=int, default=None, help="requests to send (default: number of bodies)"
    )
    parser.add_argument("--concurrency", "-c", type=int, default=64)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open loop at this many requests/s (default: closed loop)",
    )
    parser.add_argument("--header", "-H", action="append", type=_parse_header, default=[])
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, s")
    parser.add_argument(
        "--latencies", action="store_true", help="include every latency in the JSON output"
    )
    args = parser.parse_args(argv)
    if args.body_file is not None:
        bodies = [args.body_file.read_bytes()]
    else:
        bodies = [line for line in args.body_lines.read_bytes().splitlines() if line.strip()]
    result = run_load(
        args.url,
        bodies,
        args.concurrency,
        dict(args.header),
        args.rate,
        n=args.n,
        timeout_s=args.timeout,
    )
    json.dump(result.to_json(latencies=args.latencies), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
