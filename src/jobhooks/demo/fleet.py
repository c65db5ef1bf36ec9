"""An orchestrator fleet that reports completed jobs to a jobhooks API (for demos and load)."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["FleetPlan", "SimulationResult", "simulate"]

JOB_TYPES = (
    ("WinCertInventory", "Inventory"),
    ("PEMInventory", "Inventory"),
    ("PEMManagement", "Add"),
    ("JKSReenrollment", "Reenrollment"),
    ("SSL Monitoring", "Inventory"),
    ("SSL Discovery", "Discovery"),
)
FAILURE_MESSAGES = (
    "Access denied to store /etc/ssl/certs",
    "The remote server returned an error: (401) Unauthorized.",
    "Unable to connect to host: connection timed out",
    "Certificate store file not found",
    "Keystore was tampered with, or password was incorrect",
)
_NAMESPACE = uuid.UUID("9d1f3a52-2b7e-4f0c-8a4e-6c1b2d3e4f50")


def job_type_id(name: str) -> uuid.UUID:
    """A stable GUID for a simulated job type name."""
    return uuid.uuid5(_NAMESPACE, name)


@dataclass(frozen=True)
class FleetPlan:
    """What to simulate: how many agents and reports, how fast, and how often jobs fail."""

    agents: int = 20
    count: int = 2000
    rate: float = 0.0
    """Reports per second across the fleet; 0 sends as fast as the server answers."""
    concurrency: int = 8
    failure: float = 0.10
    warning: float = 0.05
    jobs_per_agent: int = 5
    seed: int = 1
    burst: int = 0
    """Machines whose every job fails at once after the other reports (a host gone down)."""
    burst_jobs: int = 40
    """Jobs on each of those machines."""


@dataclass
class SimulationResult:
    """What the fleet saw: answers by status and acknowledgement latencies."""

    elapsed: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    results: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    completion_ids: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        """Reports answered 202."""
        return self.statuses.get(202, 0)

    def percentile(self, fraction: float) -> float:
        """A latency percentile in seconds (0 when nothing was measured)."""
        if not self.latencies:
            return 0.0
        if len(self.latencies) == 1:
            return self.latencies[0]
        cuts = statistics.quantiles(self.latencies, n=1000, method="inclusive")
        return cuts[min(len(cuts) - 1, max(0, round(fraction * 1000) - 1))]


def _machine_jobs(prefix: str, count: int, jobs: int, rng: random.Random) -> list[dict[str, Any]]:
    """``jobs`` jobs on each of ``count`` machines named ``<prefix>NN.example.com``."""
    found = []
    for number in range(count):
        agent = uuid.UUID(int=rng.getrandbits(128), version=4)
        host = f"{prefix}{number + 1:02d}"
        for _ in range(jobs):
            name, operation = rng.choice(JOB_TYPES)
            found.append(
                {
                    "agent_id": str(agent),
                    "username": f"EXAMPLE\\svc-{host}",
                    "client_machine": f"{host}.example.com",
                    "job_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "job_type": name,
                    "job_type_id": str(job_type_id(name)),
                    "operation_type": operation,
                }
            )
    return found


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _report(job: dict[str, Any], plan: FleetPlan, rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    if roll < plan.failure:
        result, message = "Failure", rng.choice(FAILURE_MESSAGES)
    elif roll < plan.failure + plan.warning:
        result, message = "Warning", "Completed with warnings: 1 certificate skipped"
    else:
        result, message = "Success", None
    return {**job, "job_result": result, "message": message, "request_timestamp": _stamp()}


def _burst(plan: FleetPlan, rng: random.Random) -> list[dict[str, Any]]:
    """Every job of ``plan.burst`` machines failing at once: the host is unreachable."""
    return [
        {
            **job,
            "job_result": "Failure",
            "message": f"Unable to connect to {job['client_machine']}: connection timed out",
            "request_timestamp": _stamp(),
        }
        for job in _machine_jobs("store", plan.burst, plan.burst_jobs, rng)
    ]


async def simulate(
    url: str, token: str, plan: FleetPlan, *, progress: bool = True
) -> SimulationResult:
    """Post ``plan.count`` reports from ``plan.agents`` agents to ``url``, then the burst's.

    ``token`` is an admin token (it may report for any agent).
    """
    rng = random.Random(plan.seed)
    jobs = _machine_jobs("orch", plan.agents, plan.jobs_per_agent, rng)
    reports = [_report(rng.choice(jobs), plan, rng) for _ in range(plan.count)]
    reports += _burst(plan, rng)
    result = SimulationResult()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for report in reports:
        queue.put_nowait(report)
    endpoint = url.rstrip("/") + "/api/v1/job-completions"
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(
        max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency
    )
    started = time.perf_counter()
    interval = 1.0 / plan.rate if plan.rate > 0 else 0.0
    bar = Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.0f}/s"),
        TimeRemainingColumn(),
        disable=not progress,
        transient=False,
    )
    total = len(reports)
    task = bar.add_task("reports", total=total, rate=0.0)
    sent = 0

    async def agent_loop(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while True:
            try:
                report = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if interval:
                due = started + sent * interval
                sent += 1
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            begin = time.perf_counter()
            try:
                response = await client.post(endpoint, json=report, headers=headers)
            except httpx.HTTPError as exc:
                result.errors[type(exc).__name__] += 1
            else:
                result.latencies.append(time.perf_counter() - begin)
                result.statuses[response.status_code] += 1
                if response.status_code == 202:
                    result.results[report["job_result"]] += 1
                    result.completion_ids.append(response.json()["id"])
            done = total - queue.qsize()
            bar.update(task, completed=done, rate=done / max(1e-9, time.perf_counter() - started))

    with bar:
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            await asyncio.gather(*(agent_loop(client) for _ in range(plan.concurrency)))
    result.elapsed = time.perf_counter() - started
    return result
