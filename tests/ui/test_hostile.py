"""What an agent sends, and filters typed by hand, in a real browser: the page keeps its
layout, and its forms say what is in force and what is wrong."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from support.browser import VIEWPORTS, Dashboard, Watched, screenshot, served_dashboard, sign_in
from support.reports import AGENT_A
from support.server import wait_for

ECHO = """
[[handlers]]
name = "echo"
type = "ui.hostile_handlers:EchoesMessage"
job_types = "*"
max_attempts = 1
"""


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """``jobhooks serve`` with one handler that fails quoting the completion's message."""
    with served_dashboard(tmp_path_factory.mktemp("hostile"), ECHO) as served:
        yield served


def _dead(dashboard: Dashboard, completion_id: str) -> list[dict[str, Any]] | None:
    runs: list[dict[str, Any]] = dashboard.detail(completion_id)["handler_runs"]
    return runs if runs and all(run["status"] == "dead" for run in runs) else None


def _overflow(page: Any) -> int:
    """How far the page scrolls sideways (0 when it fits its window)."""
    width: int = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return width


def test_a_long_unbroken_handler_error_wraps_on_every_page(
    echo: Dashboard, open_page: Callable[..., Watched]
) -> None:
    # A path or a base64 blob with no space in it: the handler's error quotes it.
    unbroken = "C:/ProgramData/Orchestrator/" + "x" * 600
    answer = echo.post(message=unbroken, job_type_id=str(uuid.uuid4()))
    wait_for(lambda: _dead(echo, answer["id"]), 15, "the echo run to die")
    for viewport in VIEWPORTS:
        watched = open_page(viewport)
        page = watched.page
        sign_in(page, echo.url, echo.tokens["admin"])
        typed = "y" * 600  # addresses typed or pasted: shown back in the page
        for path in (
            "/ui/",
            "/ui/runs",
            "/ui/handlers",
            f"/ui/completions/{answer['id']}",
            f"/ui/runs?handler={typed}",
            f"/ui/handlers/{typed}/replay-dead",
            f"/ui/{typed}",
        ):
            page.goto(echo.url + path)
            expect(page.locator("main")).to_contain_text(("y" if typed in path else "x") * 40)
            assert _overflow(page) <= 0, f"{path} scrolls sideways at {viewport} width"
        screenshot(page, f"hostile-long-error-{viewport}")
        # The address typed last is a 404 on purpose: chromium logs it, nothing else.
        watched.errors = [error for error in watched.errors if "404 (Not Found)" not in error]
        watched.assert_quiet()


def test_the_filter_form_shows_the_filter_in_force_however_it_was_spelled(
    echo: Dashboard, open_page: Callable[..., Watched]
) -> None:
    echo.post(message="one of agent A's", job_result="Failure")
    watched = open_page()
    page = watched.page
    sign_in(page, echo.url, echo.tokens["viewer"])
    unknown = "00000000-0000-4000-8000-00000000abcd"
    spelled = {
        f"agent={str(AGENT_A).upper()}&result=4": (str(AGENT_A), "Failure"),
        f"agent={{{AGENT_A}}}&result=failure": (str(AGENT_A), "Failure"),
        f"agent={unknown}": (unknown, ""),
    }
    for query, (agent, result) in spelled.items():
        page.goto(f"{echo.url}/ui/completions?{query}")
        expect(page.locator("#f-agent")).to_have_value(agent)
        expect(page.locator("#f-result")).to_have_value(result)
    # Filtering on something else keeps the agent the list is filtered by.
    page.goto(f"{echo.url}/ui/completions?agent={unknown}")
    page.get_by_label("Result").select_option("Success")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**result=Success**")
    assert f"agent={unknown}" in page.url
    watched.assert_quiet()


def test_a_filter_that_is_not_valid_is_marked_on_its_field(
    echo: Dashboard, open_page: Callable[..., Watched]
) -> None:
    watched = open_page()
    page = watched.page
    sign_in(page, echo.url, echo.tokens["viewer"])
    page.goto(f"{echo.url}/ui/completions?job_type=nope&since=yesterday&result=Fabulous")
    for label, message in (
        ("Job type", "not a GUID"),
        ("From (UTC)", "expected a date and time"),
        ("Result", "unknown value"),
    ):
        field = page.get_by_label(label, exact=True)
        expect(field).to_have_attribute("aria-invalid", "true")
        expect(field).to_have_accessible_description(re.compile(message))
    for label in ("Client machine", "To (UTC)"):
        expect(page.get_by_label(label, exact=True)).not_to_have_attribute("aria-invalid", "true")
    # The first field in error has the focus: a keyboard user starts where it is wrong.
    expect(page.get_by_label("Job type", exact=True)).to_be_focused()
    page.goto(f"{echo.url}/ui/runs?status=zombie")
    status = page.get_by_label("Status", exact=True)
    expect(status).to_have_attribute("aria-invalid", "true")
    expect(status).to_have_accessible_description(re.compile("expected one of"))
    watched.assert_quiet()
