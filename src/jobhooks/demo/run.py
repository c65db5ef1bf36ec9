"""``jobhooks demo``: serve on a temporary database, simulate a fleet, summarise."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from jobhooks.config.defaults import resolve_database
from jobhooks.demo.fleet import JOB_TYPES, FleetPlan, SimulationResult, job_type_id, simulate
from jobhooks.registry import load
from jobhooks.store import Store

__all__ = [
    "BURST",
    "DIGEST_HANDLER",
    "DIGEST_WAIT",
    "RULED_HANDLER",
    "demo_config",
    "demo_plan",
    "free_listen",
    "percentiles",
    "run_demo",
]

RULED_HANDLER = "page-on-call"
"""The demo's registration with notification rules (the summary counts what it fired)."""
DIGEST_HANDLER = "machine-down"
"""The demo's registration with digests: failures grouped per machine."""
DIGEST_WAIT = 5.0
"""Seconds its digests collect."""
BURST = 3
"""Machines of the demo's fleet whose every job fails at once at the end."""


def demo_plan(agents: int = 20, count: int = 2000, rate: float = 0.0) -> FleetPlan:
    """The demo's fleet: ``count`` reports, then :data:`BURST` machines failing every job."""
    return FleetPlan(agents=agents, count=count, rate=rate, burst=BURST)


def free_listen(preferred: str) -> str:
    """``preferred`` if its port is free, else the same host on a free port."""
    host, _, port = preferred.rpartition(":")
    with socket.socket() as probe:
        try:
            probe.bind((host, int(port)))
            return preferred
        except OSError:
            probe.bind((host, 0))
            return f"{host}:{probe.getsockname()[1]}"


def demo_config(data_dir: Path, listen: str) -> str:
    """The demo's jobhooks.toml: the log handler for everything, a flaky notifier, and a
    page that only fires when a job fails twice in a row and when it recovers."""
    names = "\n".join(f'"{name}" = "{job_type_id(name)}"' for name, _ in JOB_TYPES)
    return f"""# The configuration `jobhooks demo` runs with.
[server]
listen = "{listen}"
database = "sqlite:///{data_dir / "jobhooks.db"}"

[job_types]
{names}

[[handlers]]
name = "log-everything"
type = "log"
job_types = "*"
[handlers.properties]
level = "debug"

[[handlers]]
name = "flaky-notifier"
type = "jobhooks.demo.handlers:FlakyNotifier"
job_types = ["WinCertInventory", "PEMInventory", "SSL Monitoring"]
max_attempts = 3
backoff = 0.2

[[handlers]]
name = "{RULED_HANDLER}"
type = "log"
job_types = "*"
when = ["failure-streak", "recovered"]
streak = 2

[[handlers]]
name = "{DIGEST_HANDLER}"
type = "log"
job_types = "*"
when = "failure"
group_by = ["client_machine"]
group_wait = "{DIGEST_WAIT:g}s"
"""


def percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``values`` (seconds), 0 when empty."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (0.0, 0.0)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


def _start_server(config_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "JOBHOOKS_LOG_LEVEL": "ERROR"}
    return subprocess.Popen(
        [sys.executable, "-m", "jobhooks.cli", "serve", "--config", str(config_path)],
        env=env,
        stdout=subprocess.DEVNULL,
    )


async def _wait_until_up(url: str, server: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(timeout=1) as client:
        for _ in range(300):
            if server.poll() is not None:
                raise RuntimeError(f"the demo server exited with code {server.returncode}")
            try:
                if (await client.get(url + "/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the demo server did not answer within 15 s")


async def run_demo(
    config_path: Path, plan: FleetPlan, announce: Callable[[str, str], None]
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start ``jobhooks serve`` on ``config_path``, simulate ``plan`` against it, wait
    until every run has finished, and return the server process and a summary."""
    loaded = load(config_path)
    store = Store(resolve_database(loaded.config.server.database, config_path))
    admin, _ = await store.tokens.create("admin", label="demo")
    url = f"http://{loaded.config.server.listen}"
    server = _start_server(config_path)
    try:
        await _wait_until_up(url, server)
        announce(url, admin)
        result: SimulationResult = await simulate(url, admin, plan)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            counts = await store.reads.run_totals()
            waiting = sum(
                c["collecting"] + c["pending"] + c["running"] + c["failed"] for c in counts.values()
            )
            if waiting == 0:
                break
            await asyncio.sleep(0.25)
        summary = {
            "url": url,
            "admin_token": admin,
            "simulation": result,
            "completions": await store.reads.totals_by_result(),
            "runs": await store.reads.run_totals(),
            "not_sent": await store.reads.not_sent_totals(),
            "digests": await store.reads.digest_totals(),
            "checkin_latency": percentiles(result.latencies),
            "dispatch_latency": percentiles(await store.reads.dispatch_latencies()),
        }
    except BaseException:
        server.kill()
        server.wait()
        raise
    finally:
        store.close()
    return server, summary
