"""The dashboard as operators use it, in chromium against a real server."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect
from support.browser import DOOMED_TYPE, Dashboard, Watched, screenshot, sign_in
from support.server import wait_for

PAGES = {
    "overview": "/ui/",
    "completions": "/ui/completions",
    "runs": "/ui/runs",
    "handlers": "/ui/handlers",
    "job-types": "/ui/job-types",
    "agents": "/ui/agents",
}


def _dead(dashboard: Dashboard, completion_id: str) -> dict[str, Any] | None:
    runs = dashboard.detail(completion_id)["handler_runs"]
    statuses = {run["handler"]: run["status"] for run in runs}
    return runs if statuses == {"record-all": "succeeded", "gated": "dead"} else None


def test_an_admin_follows_a_completion_from_the_overview_to_a_replay(
    dashboard: Dashboard, open_page: Callable[..., Watched]
) -> None:
    (dashboard.directory / "gate").unlink(missing_ok=True)
    answer = dashboard.post(
        job_type="Doomed job",
        job_type_id=DOOMED_TYPE,
        client_machine="orch-ui-01.example.com",
        message="Access denied to store /etc/ssl (from the UI test)",
        certificate_id=4711,
        job_history_id=98765,
        current_retry_count=3,
    )
    completion_id = answer["id"]
    wait_for(lambda: _dead(dashboard, completion_id), 15, "the gated run to die")

    watched = open_page()
    page = watched.page
    sign_in(page, dashboard.url, dashboard.tokens["admin"])
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    expect(page.locator("#h-types + .table-wrap")).to_contain_text("Doomed job")
    expect(page.locator("#h-agents + .table-wrap")).to_contain_text("orch-ui-01.example.com")
    expect(page.locator("#h-health + .table-wrap")).to_contain_text("gate gate is closed")

    page.get_by_role("link", name="Completions", exact=True).click()
    row = page.locator("tbody tr", has_text="orch-ui-01.example.com")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Failure")
    row.get_by_role("link").click()
    page.wait_for_url(f"**/ui/completions/{completion_id}")

    fields = page.locator("dl.fields")
    for text in (
        completion_id,
        "check-in",
        str(answer["id"]),
        "EXAMPLE\\orch01",
        "orch-ui-01.example.com",
        "Doomed job",
        DOOMED_TYPE,
        "Inventory",
        "4711",
        "98765",
    ):
        expect(fields).to_contain_text(text)
    expect(page.locator("pre.message-block")).to_have_text(
        "Access denied to store /etc/ssl (from the UI test)"
    )
    gated = page.locator("article.run", has=page.get_by_role("heading", name="gated"))
    expect(gated.locator(".badge").first).to_have_text("dead")
    expect(gated).to_contain_text("gate gate is closed")
    expect(gated.locator("table.attempts tbody tr")).to_have_count(2)
    record = page.locator("article.run", has=page.get_by_role("heading", name="record-all"))
    expect(record.get_by_role("button", name="Replay")).to_have_count(0)

    screenshot(page, "completion-dead-desktop")
    (dashboard.directory / "gate").write_text("open", encoding="utf-8")
    gated.get_by_role("button", name="Replay").click()
    expect(page.locator(".notice")).to_contain_text("pending again")
    gated = page.locator("article.run", has=page.get_by_role("heading", name="gated"))
    expect(gated.locator("table.attempts tbody tr")).to_have_count(3, timeout=15_000)
    third = gated.locator("table.attempts tbody tr").nth(2)
    expect(third).to_contain_text("succeeded")
    expect(gated.locator(".badge").first).to_have_text("succeeded")
    watched.assert_quiet()


def test_every_page_renders_at_desktop_and_phone_width(
    dashboard: Dashboard, open_page: Callable[..., Watched]
) -> None:
    answer = dashboard.post(client_machine="orch-shots.example.com")
    for viewport in ("desktop", "phone"):
        watched = open_page(viewport)
        page = watched.page
        sign_in(page, dashboard.url, dashboard.tokens["admin"])
        for name, path in {**PAGES, "completion": f"/ui/completions/{answer['id']}"}.items():
            page.goto(dashboard.url + path)
            expect(page.locator("h1")).to_be_visible()
            screenshot(page, f"{name}-{viewport}")
            # Nothing wider than the screen but the tables and the chart, which scroll.
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} at {viewport} is {overflow}px wider than the screen"
        watched.assert_quiet()
        signed_out = open_page(viewport)
        signed_out.page.goto(dashboard.url + "/ui/login")
        screenshot(signed_out.page, f"login-{viewport}")
        signed_out.assert_quiet()


def test_times_show_in_the_viewers_time_zone_with_utc_on_hover(
    dashboard: Dashboard, open_page: Callable[..., Watched]
) -> None:
    answer = dashboard.post(request_timestamp="2026-01-15T10:00:00Z")
    watched = open_page()
    page = watched.page
    sign_in(page, dashboard.url, dashboard.tokens["admin"])
    page.goto(f"{dashboard.url}/ui/completions/{answer['id']}")
    requested = page.locator("dt:text-is('Request timestamp') + dd time")
    expect(requested).to_have_attribute("title", "2026-01-15 10:00:00 UTC")
    expect(requested).to_have_text(re.compile(r"15/01/2026,? 11:00:00"))  # Europe/Paris
    watched.assert_quiet()


def test_a_viewer_reads_every_page_but_cannot_replay(
    dashboard: Dashboard, open_page: Callable[..., Watched]
) -> None:
    (dashboard.directory / "gate").unlink(missing_ok=True)
    answer = dashboard.post(job_type="Doomed job", job_type_id=DOOMED_TYPE)
    runs = wait_for(lambda: _dead(dashboard, answer["id"]), 15, "the gated run to die")
    dead = next(run for run in runs if run["status"] == "dead")
    watched = open_page()
    page = watched.page
    sign_in(page, dashboard.url, dashboard.tokens["viewer"])
    expect(page.locator(".role")).to_have_text("viewer")
    for path in [*PAGES.values(), f"/ui/completions/{answer['id']}", "/ui/runs?status=dead"]:
        page.goto(dashboard.url + path)
        expect(page.locator("h1")).to_be_visible()
        expect(page.get_by_role("button", name="Replay")).to_have_count(0)
        expect(page.get_by_text("Replay every dead run")).to_have_count(0)
    page.goto(f"{dashboard.url}/ui/completions/{answer['id']}")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    forged = page.request.post(
        f"{dashboard.url}/ui/runs/{dead['id']}/replay",
        form={"csrf": csrf or "", "back": "/ui/runs"},
        max_redirects=0,
    )
    assert forged.status == 403
    assert _dead(dashboard, answer["id"]) is not None
    confirm = page.request.get(f"{dashboard.url}/ui/handlers/gated/replay-dead", max_redirects=0)
    assert confirm.status == 403
    watched.assert_quiet()


def test_without_a_session_every_page_leads_to_the_sign_in(
    dashboard: Dashboard, open_page: Callable[..., Watched]
) -> None:
    page = open_page().page
    for path in [*PAGES.values(), "/ui/completions/nonexistent", "/ui/runs?status=dead"]:
        page.goto(dashboard.url + path)
        assert re.search(r"/ui/login(\?|$)", page.url), (path, page.url)
        expect(page.get_by_label("Token")).to_be_visible()


def test_a_wrong_token_gets_a_clear_message(
    dashboard: Dashboard, open_page: Callable[..., Watched]
) -> None:
    page = open_page().page
    page.goto(f"{dashboard.url}/ui/login")
    page.get_by_label("Token").fill("jh_000000000000_not-a-real-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")
    page.get_by_label("Token").fill(dashboard.tokens["agent"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("agent token")
    assert "/ui/login" in page.url


def test_sign_out_ends_the_session_and_forms_need_their_csrf_token(
    dashboard: Dashboard, open_page: Callable[..., Watched]
) -> None:
    watched = open_page()
    page = watched.page
    sign_in(page, dashboard.url, dashboard.tokens["admin"])
    refused = page.request.post(
        f"{dashboard.url}/ui/runs/0190f000-0000-7000-8000-000000000000/replay",
        form={"back": "/ui/runs"},
        max_redirects=0,
    )
    assert refused.status == 403
    assert "CSRF" in refused.text()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("signed out")
    page.goto(f"{dashboard.url}/ui/agents")
    assert "/ui/login" in page.url
    watched.assert_quiet()


def test_the_pages_can_be_used_from_the_keyboard(
    dashboard: Dashboard, open_page: Callable[..., Watched]
) -> None:
    page = open_page().page
    sign_in(page, dashboard.url, dashboard.tokens["admin"])
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to content")
    page.keyboard.press("Enter")
    for _ in range(3):
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('main') !== null")
    page.goto(f"{dashboard.url}/ui/completions")
    page.get_by_label("Result").select_option("Failure")
    page.get_by_role("button", name="Filter").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*result=Failure.*"))


def test_reading_works_with_javascript_off(
    dashboard: Dashboard, open_page: Callable[..., Watched]
) -> None:
    answer = dashboard.post(request_timestamp="2026-01-15T10:00:00Z", message="no script here")
    watched = open_page(javascript=False)
    page = watched.page
    sign_in(page, dashboard.url, dashboard.tokens["viewer"])
    expect(page.locator("#h-chart")).to_be_visible()
    expect(page.locator("svg rect").first).to_be_attached()
    page.get_by_role("link", name="Completions", exact=True).click()
    page.get_by_label("Result").select_option("Failure")
    page.get_by_role("button", name="Filter").click()
    page.locator("tbody tr", has_text="no script here").get_by_role("link").click()
    page.wait_for_url(f"**/ui/completions/{answer['id']}")
    requested = page.locator("dt:text-is('Request timestamp') + dd time")
    expect(requested).to_have_text("2026-01-15 10:00:00 UTC")
    watched.assert_quiet()


def test_the_overview_refreshes_itself_without_a_reload(
    dashboard: Dashboard, open_page: Callable[..., Watched]
) -> None:
    dashboard.post(client_machine="orch-before.example.com")
    watched = open_page()
    page = watched.page
    page.clock.install()
    sign_in(page, dashboard.url, dashboard.tokens["admin"])
    agents = page.locator("#h-agents + .table-wrap")
    expect(agents).not_to_contain_text("orch-refreshed.example.com")
    page.evaluate("window.jobhooksTestMarker = 'still the same page'")
    dashboard.post(client_machine="orch-refreshed.example.com")
    page.clock.run_for(11_000)
    expect(agents).to_contain_text("orch-refreshed.example.com")
    assert page.evaluate("window.jobhooksTestMarker") == "still the same page"
    watched.assert_quiet()
