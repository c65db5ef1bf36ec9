"""PostgreSQL's host vanishes under a node, then comes back; prints what the node saw, as
one JSON line.

Run by the tests as ``python -m support.vanished_host WHAT SOCKET URL``: ``SOCKET`` is a
Unix socket that reaches the database (see :class:`support.network.Relay`), ``URL`` the
database's URL (its host and port are replaced by the relay inside the namespace).
``WHAT`` is ``check-in`` (a store checks in, the host vanishes, it checks in again:
what was it answered, and when) or ``listen`` (a node listens for wake-ups, the host
vanishes: when does it notice; the host comes back: does an announcement reach it).
"""

from __future__ import annotations

import sys

from support.network import enter_private_network

enter_private_network()  # before any thread starts

import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from jobhooks.dispatch.wakeup import PostgresWakeup  # noqa: E402
from jobhooks.store import Store, engine, writer  # noqa: E402
from support.network import Relay, set_loopback  # noqa: E402
from support.reports import new_completion  # noqa: E402


def check_in_twice(url: str) -> dict[str, object]:
    """Check in once, take the network away, check in again."""
    store = Store(url)
    asyncio.run(store.check_in(new_completion()))
    set_loopback(up=False)
    started = time.monotonic()
    try:
        asyncio.run(store.check_in(new_completion()))
    except Exception as exc:
        return {"error": type(exc).__name__, "message": str(exc), "seconds": _since(started)}
    return {"error": None, "seconds": _since(started)}


async def listen_through(url: str) -> dict[str, object]:
    """Listen, take the network away until the node notices, give it back, announce."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    wakeup = PostgresWakeup(url, {"jobhooks_reload": heard.put_nowait})
    wakeup.start()
    try:
        await _until(lambda: wakeup.connected, 10)
        set_loopback(up=False)
        started = time.monotonic()
        await _until(lambda: not wakeup.connected, 40)
        noticed = _since(started)
        set_loopback(up=True)
        await _until(lambda: wakeup.connected, 40)
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("NOTIFY jobhooks_reload, 'after the outage'")
        payload = await asyncio.wait_for(heard.get(), 10)
    finally:
        wakeup.stop()
    return {"noticed": noticed, "heard": payload}


async def _until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting after {seconds} s")
        await asyncio.sleep(0.05)


def _since(started: float) -> float:
    return time.monotonic() - started


def main(what: str, socket_path: str, url: str) -> None:
    """Run ``what`` through a relay in this namespace; print its result."""
    engine.TCP_USER_TIMEOUT = 2
    engine.IDLE_PROBE = 1
    writer.FATE_WAIT = 0.5
    relay = Relay.tcp_to_unix(Path(socket_path))
    here = make_url(url).set(host="127.0.0.1", port=relay.port)
    here_url = here.render_as_string(hide_password=False)
    if what == "check-in":
        answer = check_in_twice(here_url)
    else:
        answer = asyncio.run(listen_through(here_url))
    print(json.dumps(answer), flush=True)
    os._exit(0)  # the store's connections may lead nowhere: closing them would wait


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
