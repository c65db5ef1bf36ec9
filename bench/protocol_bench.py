"""CPU time ``serve``'s HTTP protocol spends on a request, without the network, the
framework or the store: check-in-sized requests fed to the protocol's
``data_received`` one at a time, each answered at once by a bare ASGI app, on uvloop.
Measured with ``time.process_time`` in one process, so it moves by a few percent where a
whole server's figures move by twenty: the benchmark for a change to the protocol
(``src/jobhooks/api/protocol.py``). With ``--against SRC`` another checkout's protocol
is measured too, rounds alternated.

Usage: ``python bench/protocol_bench.py [--n 20000] [--rounds 7] [--against OTHER/src]``
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.server import ServerState

THIS = Path(__file__).resolve().parent.parent / "src"

REQUEST = (
    b"POST /api/v1/job-completions HTTP/1.1\r\nHost: jobhooks.example.com:8080\r\n"
    b"Content-Type: application/json\r\nAuthorization: Bearer jh_" + b"k" * 52 + b"\r\n"
    b"Content-Length: 420\r\n\r\n" + b"x" * 420
)


async def app(_scope: Any, receive: Any, send: Any) -> None:
    """Reads the body, answers 202 with a small JSON body."""
    await receive()
    await send(
        {"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


class NullTransport(asyncio.Transport):
    """A socket that takes every write and never closes."""

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def load_protocol(src: Path, name: str) -> ModuleType:
    """``jobhooks.api.protocol`` of the checkout whose ``src`` folder is ``src``."""
    spec = importlib.util.spec_from_file_location(name, src / "jobhooks/api/protocol.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def per_request(protocol: type[Any], n: int) -> float:
    """µs of CPU per request over ``n`` requests on one keep-alive connection."""
    config = Config(app, lifespan="off", log_config=None)
    config.load()
    connection = protocol(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    connection.connection_made(NullTransport())
    started = time.process_time()
    for _ in range(n):
        connection.data_received(REQUEST)
        for _ in range(3):  # the request's task runs and answers
            await asyncio.sleep(0)
    return (time.process_time() - started) / n * 1e6


async def measure(trees: dict[str, ModuleType], n: int, rounds: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(rounds):
        for name, module in trees.items():
            figures[name].append(await per_request(module.OneWriteProtocol, n))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--against", help="another checkout's src folder")
    args = parser.parse_args()
    trees = {"this": load_protocol(THIS, "protocol_this")}
    if args.against:
        trees["other"] = load_protocol(Path(args.against), "protocol_other")
    figures = uvloop.run(measure(trees, args.n, args.rounds))
    for name, values in figures.items():
        shown = " · ".join(f"{value:.1f}" for value in values)
        print(f"protocol ({name})  {statistics.median(values):5.2f} µs CPU per request ({shown})")
    if "other" in figures:
        ratio = statistics.median(figures["this"]) / statistics.median(figures["other"])
        print(f"this / other: {ratio:.3f}")


if __name__ == "__main__":
    main()
