"""SIGKILL in the middle of a load: every acknowledged completion is handled after a restart."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from support import cli
from support.handlers import read_lines
from support.pipeline import no_open_runs
from support.reports import AGENT_A, report
from support.server import StartServer, wait_for, write_config

THREADS = 12
PER_THREAD = 100
KILL_AFTER = 600
AFTER_RESTART = 40


class Load:
    """Threads posting completions; ``acknowledged`` holds the ids answered with 202."""

    def __init__(self, url: str, token: str, per_thread: int) -> None:
        self.acknowledged: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._post, args=(url, token, per_thread), daemon=True)
            for _ in range(THREADS)
        ]
        for thread in self._threads:
            thread.start()

    def join(self, stop: bool = False) -> list[str]:
        """Wait for the threads (told to stop first if ``stop``); returns what was acknowledged."""
        if stop:
            self._stop.set()
        for thread in self._threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in self._threads)
        return self.acknowledged

    def _post(self, url: str, token: str, per_thread: int) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            for _ in range(per_thread):
                if self._stop.is_set():
                    return
                try:
                    response = client.post("/api/v1/job-completions", json=report())
                except httpx.TransportError:
                    return
                if response.status_code == 202:
                    with self._lock:
                        self.acknowledged.append(response.json()["id"])


def _all_runs(admin: httpx.Client) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        page = admin.get("/api/v1/handler-runs", params=params).json()
        runs += page["items"]
        if page["next"] is None:
            return runs
        params["before"] = page["next"]


def test_acknowledged_completions_survive_sigkill(
    tmp_path: Path, start_server: StartServer
) -> None:
    trace = tmp_path / "handled.log"
    config = write_config(
        tmp_path,
        f"""
        [[handlers]]
        name = "append"
        type = "support.handlers:Appender"
        job_types = "*"
        timeout = 1
        backoff = 0.05
        properties = {{ path = "{trace}" }}
        """,
    )
    admin_token = cli.token(config, "--admin")
    agent_token = cli.token(config, "--agent", str(AGENT_A))
    server = start_server(config)

    load = Load(server.url, agent_token, PER_THREAD)
    wait_for(lambda: len(load.acknowledged) >= KILL_AFTER, 60, f"{KILL_AFTER} acknowledged")
    server.kill()
    acknowledged = list(load.join(stop=True))
    killed_at = len(acknowledged)
    assert killed_at < THREADS * PER_THREAD, "the load ended before the kill"

    restarted = start_server(config)
    acknowledged += Load(restarted.url, agent_token, AFTER_RESTART).join()
    with restarted.client(admin_token) as admin:
        wait_for(
            lambda: no_open_runs(admin), 30, "every run to finish after the restart", interval=0.25
        )
        runs = _all_runs(admin)

    by_completion: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_completion.setdefault(run["completion_id"], []).append(run)
    lost = [cid for cid in acknowledged if cid not in by_completion]
    assert not lost, f"{len(lost)} acknowledged completions are gone after the crash"
    assert all(len(by_completion[cid]) == 1 for cid in acknowledged)
    not_done = [by_completion[cid][0] for cid in acknowledged]
    not_done = [run for run in not_done if run["status"] != "succeeded"]
    assert not not_done, f"{len(not_done)} runs did not succeed, e.g. {not_done[:3]}"

    lines = read_lines(trace)
    executions = Counter(line.split()[0] for line in lines)
    never = [cid for cid in acknowledged if executions[cid] == 0]
    assert not never, f"{len(never)} acknowledged completions were never handled"
    twice = sum(1 for cid in acknowledged if executions[cid] > 1)
    later_attempts = sum(1 for line in lines if line.split()[1] != "1")
    stored = len(by_completion)
    print(
        f"\ncrash test: {killed_at} check-ins acknowledged before SIGKILL, "
        f"{len(acknowledged) - killed_at} after the restart; {stored} completions stored "
        f"({stored - len(acknowledged)} stored but their answer cut off by the kill); "
        f"{len(lines)} handler executions; 0 acknowledged completions lost; "
        f"{twice} handled twice (at-least-once); "
        f"{later_attempts} executions were a retry after a lease expired"
    )
