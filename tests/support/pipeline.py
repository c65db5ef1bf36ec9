"""One server with a handler for each behaviour the end-to-end tests watch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support import cli
from support.handlers import read_lines
from support.reports import AGENT_A, AGENT_B, DOOMED, FLAKY, GATED_MANY, GATED_ONE, INVENTORY
from support.server import ServerProcess, wait_for, write_config

FINAL = {"succeeded", "dead"}

HANDLERS = """
[job_types]
"SSL Inventory" = "{inventory}"

[[handlers]]
name = "record-all"
type = "support.handlers:Appender"
job_types = "*"
properties = {{ path = "{dir}/all.log" }}

[[handlers]]
name = "record-inventory"
type = "support.handlers:Appender"
job_types = ["{inventory}"]
properties = {{ path = "{dir}/inventory.log" }}

[[handlers]]
name = "flaky"
type = "support.handlers:Flaky"
job_types = ["{flaky}"]
backoff = 0.05
max_attempts = 5
properties = {{ state_dir = "{dir}", failures = 2 }}

[[handlers]]
name = "gated-one"
type = "support.handlers:Gated"
job_types = ["{gated_one}"]
backoff = 0.05
max_attempts = 3
properties = {{ gate = "{dir}/gate-one", path = "{dir}/gated-one.log" }}

[[handlers]]
name = "gated-many"
type = "support.handlers:Gated"
job_types = ["{gated_many}"]
backoff = 0.05
max_attempts = 2
properties = {{ gate = "{dir}/gate-many", path = "{dir}/gated-many.log" }}

[[handlers]]
name = "doomed"
type = "support.handlers:Raises"
job_types = ["{doomed}"]
backoff = 0.05
max_attempts = 2
"""
"""Registrations: ``record-all`` for every job type, one handler per test job type."""


def no_open_runs(admin: httpx.Client) -> bool:
    """True when no handler run is pending, running or failed awaiting a retry."""
    for status in ("pending", "running", "failed"):
        page = admin.get("/api/v1/handler-runs", params={"status": status, "limit": 1})
        assert page.status_code == 200, page.text
        if page.json()["items"]:
            return False
    return True


@dataclass
class Pipeline:
    """A running server, its directory, and clients holding each kind of token."""

    server: ServerProcess
    directory: Path
    config: Path
    tokens: dict[str, str]
    admin: httpx.Client
    agent: httpx.Client
    agent_b: httpx.Client
    viewer: httpx.Client

    def trace(self, name: str) -> list[str]:
        """Completion ids in a handler's trace file, one per execution."""
        return [line.split()[0] for line in read_lines(self.directory / name)]

    def post(self, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        """POST a completion as agent A."""
        headers = {"Idempotency-Key": key} if key else {}
        return self.agent.post("/api/v1/job-completions", json=body, headers=headers)

    def check_in(self, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        """POST a completion as agent A; returns the 202 answer."""
        response = self.post(body, key)
        assert response.status_code == 202, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def detail(self, completion_id: str) -> dict[str, Any]:
        """GET /api/v1/job-completions/{id}."""
        response = self.admin.get(f"/api/v1/job-completions/{completion_id}")
        assert response.status_code == 200, response.text
        detail: dict[str, Any] = response.json()
        return detail

    def settled(self, completion_id: str, timeout: float = 15) -> dict[str, Any]:
        """The completion once every one of its runs has succeeded or is dead."""
        last: dict[str, Any] = {}

        def probe() -> dict[str, Any] | None:
            last.update(self.detail(completion_id))
            done = all(run["status"] in FINAL for run in last["handler_runs"])
            return last if done else None

        try:
            return wait_for(probe, timeout, f"the runs of {completion_id} to finish", 0.1)
        except AssertionError as exc:
            exc.add_note(f"runs: {last.get('handler_runs')}\nserver log:\n{self.server.log()}")
            raise


@contextmanager
def running_pipeline(directory: Path) -> Iterator[Pipeline]:
    """Start the server with :data:`HANDLERS` in ``directory``; stop it on exit."""
    handlers = HANDLERS.format(
        dir=directory,
        inventory=INVENTORY,
        flaky=FLAKY,
        gated_one=GATED_ONE,
        gated_many=GATED_MANY,
        doomed=DOOMED,
    )
    config = write_config(directory, handlers)
    tokens = {
        "admin": cli.token(config, "--admin"),
        "agent": cli.token(config, "--agent", str(AGENT_A)),
        "agent_b": cli.token(config, "--agent", str(AGENT_B)),
        "viewer": cli.token(config, "--viewer"),
    }
    server = ServerProcess(config, directory / "server.log")
    with ExitStack() as stack:
        stack.callback(server.stop)
        server.start()
        clients = {role: stack.enter_context(server.client(t)) for role, t in tokens.items()}
        yield Pipeline(server, directory, config, tokens, **clients)
