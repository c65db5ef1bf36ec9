"""What the dashboard's browser tests share: chromium's settings, a running dashboard,
pages watched for dialogs and errors, signing in, screenshots."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from support.reports import AGENT_A, report
from support.server import ServerProcess, create_tokens, write_config

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}

DOOMED_TYPE = "0a1e5c2d-0000-4000-8000-0000000000dd"
"""Job type whose handler fails until its gate file exists (two attempts, then dead)."""

HANDLERS = """
[job_types]
"Doomed job" = "{doomed}"

[[handlers]]
name = "record-all"
type = "support.handlers:Appender"
job_types = "*"
properties = {{ path = "{dir}/all.log" }}

[[handlers]]
name = "gated"
type = "support.handlers:Gated"
job_types = ["Doomed job"]
backoff = 0.05
max_attempts = 2
properties = {{ gate = "{dir}/gate", path = "{dir}/gated.log" }}
"""


@dataclass
class Dashboard:
    """A running server with the dashboard, its folder and a token of each kind."""

    server: ServerProcess
    directory: Path
    tokens: dict[str, str]
    agent: httpx.Client
    admin: httpx.Client

    @property
    def url(self) -> str:
        return self.server.url

    def post(self, **fields: Any) -> dict[str, Any]:
        """POST a completion as agent A; returns the 202 answer."""
        response = self.agent.post("/api/v1/job-completions", json=report(**fields))
        assert response.status_code == 202, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def detail(self, completion_id: str) -> dict[str, Any]:
        response = self.admin.get(f"/api/v1/job-completions/{completion_id}")
        assert response.status_code == 200, response.text
        detail: dict[str, Any] = response.json()
        return detail


@dataclass
class Watched:
    """A page with every dialog, console error and page error it raised recorded."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_quiet(self) -> None:
        assert self.dialogs == [], f"dialogs opened: {self.dialogs}"
        assert self.errors == [], f"console or page errors: {self.errors}"


def sign_in(page: Any, url: str, token: str) -> None:
    """Sign in through the form and land on the overview."""
    page.goto(f"{url}/ui/login")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/ui/(\?.*)?$"))


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@contextlib.contextmanager
def served_dashboard(directory: Path, config_text: str) -> Iterator[Dashboard]:
    """``jobhooks serve`` on ``config_text`` and a free loopback port, with admin, viewer
    and agent tokens made by ``jobhooks token create``; stopped on leaving."""
    config = write_config(directory, config_text)
    admin, viewer, agent = create_tokens(config, "--admin", "--viewer", str(AGENT_A))
    server = ServerProcess(config, directory / "server.log")
    try:
        server.start()
        with server.client(agent) as agent_client, server.client(admin) as admin_client:
            yield Dashboard(
                server,
                directory,
                {"admin": admin, "viewer": viewer, "agent": agent},
                agent_client,
                admin_client,
            )
    finally:
        server.stop()
