"""Orchestrator data is data: markup in any field shows as text and runs nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from playwright.sync_api import expect
from support.browser import Dashboard, Watched, screenshot, sign_in

MESSAGE = '<script>alert("message")</script><b>bold?</b>'
MACHINE = "<img src=x onerror=alert('machine')>"
JOB_TYPE = '"><svg onload=alert(`type`)><img src=x onerror=alert(1)>'


def test_markup_in_message_machine_and_job_type_renders_as_text(
    dashboard: Dashboard, open_page: Callable[..., Watched]
) -> None:
    answer = dashboard.post(
        message=MESSAGE,
        client_machine=MACHINE,
        job_type=JOB_TYPE,
        job_type_id=str(uuid.uuid4()),
        username="EXAMPLE\\<u>orch</u>",
        job_result="Failure",
    )
    watched = open_page()
    page = watched.page
    sign_in(page, dashboard.url, dashboard.tokens["admin"])
    expect(page.locator("#h-agents + .table-wrap")).to_contain_text(MACHINE)
    expect(page.locator("#h-types + .table-wrap")).to_contain_text(JOB_TYPE)

    page.goto(f"{dashboard.url}/ui/completions")
    row = page.locator("tbody tr", has_text=MACHINE)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(JOB_TYPE)
    expect(row.locator("td.message")).to_have_text(MESSAGE)

    page.goto(f"{dashboard.url}/ui/completions/{answer['id']}")
    expect(page.locator("pre.message-block")).to_have_text(MESSAGE)
    expect(page.locator("dl.fields")).to_contain_text(MACHINE)
    expect(page.locator("dl.fields")).to_contain_text("EXAMPLE\\<u>orch</u>")
    screenshot(page, "xss-completion-desktop")

    for path in ("/ui/agents", "/ui/job-types", "/ui/completions?result=Failure"):
        page.goto(dashboard.url + path)
        expect(page.locator("main")).to_contain_text(MACHINE if "agents" in path else JOB_TYPE)

    assert page.locator("main img, main b, main u, main script").count() == 0
    assert page.evaluate("document.querySelectorAll('img[src=x], svg[onload]').length") == 0
    watched.assert_quiet()
