"""The overview of ``jobhooks demo``'s data, as the README shows it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from support.browser import SCREENSHOTS, Watched, sign_in
from support.server import free_port

from jobhooks.demo.run import BURST, DIGEST_HANDLER, RULED_HANDLER, demo_config, demo_plan, run_demo

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The demo's server after its fleet (20 agents, 2,000 reports) has reported."""
    directory = tmp_path_factory.mktemp("demo")
    config = directory / "jobhooks.toml"
    listen = f"127.0.0.1:{free_port()}"
    config.write_text(demo_config(directory, listen), encoding="utf-8")
    outcome: dict[str, Any] = {}

    def run() -> None:
        # Playwright's sync API owns this thread's event loop; the demo runs on its own.
        try:
            plan = demo_plan(agents=20, count=2000)
            outcome["server"], outcome["summary"] = asyncio.run(
                run_demo(config, plan, lambda _url, _token: None)
            )
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(180)
    if "error" in outcome:
        raise outcome["error"]
    server: subprocess.Popen[bytes] = outcome["server"]
    try:
        yield outcome["summary"]
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_the_overview_of_the_demos_data(
    demo: dict[str, Any], open_page: Callable[..., Watched]
) -> None:
    watched = open_page()
    page = watched.page
    sign_in(page, demo["url"], demo["admin_token"])
    page.goto(f"{demo['url']}/ui/?range=1h")
    total = sum(demo["completions"].values())
    expect(page.locator(".card .big").first).to_have_text(f"{total:,}".replace(",", "\u202f"))
    expect(page.locator("#h-health + .table-wrap")).to_contain_text("flaky-notifier")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "overview-demo.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("JOBHOOKS_UPDATE_DOCS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / "overview.png")
    watched.assert_quiet()


def test_the_demos_rule_is_counted_and_explained(
    demo: dict[str, Any], open_page: Callable[..., Watched]
) -> None:
    total = sum(demo["completions"].values())
    fired = sum(demo["runs"][RULED_HANDLER].values())
    skipped = demo["not_sent"][RULED_HANDLER]
    # Its job types are "*": every completion either fired it or says why it did not.
    # (The burst's failures at the end count too.)
    assert fired + skipped == total
    assert 0 < fired < total // 10

    headers = {"Authorization": f"Bearer {demo['admin_token']}"}
    with httpx.Client(base_url=demo["url"], headers=headers) as client:
        for completion_id in demo["simulation"].completion_ids:
            detail = client.get(f"/api/v1/job-completions/{completion_id}").json()
            if detail["job_result"] == "Failure" and detail["not_sent"]:
                break
        else:
            pytest.fail("no failure the rule did not fire for")
    [note] = detail["not_sent"]
    assert note["handler"] == RULED_HANDLER
    assert note["reason"].startswith("not sent: ")  # e.g. "1st consecutive failure, fires at 2"
    watched = open_page()
    sign_in(watched.page, demo["url"], demo["admin_token"])
    watched.page.goto(f"{demo['url']}/ui/completions/{completion_id}")
    expect(watched.page.locator("main")).to_contain_text(f"{RULED_HANDLER}: {note['reason']}")
    watched.assert_quiet()


def test_the_demos_burst_is_delivered_as_a_few_digests(demo: dict[str, Any]) -> None:
    failures = demo["completions"]["Failure"]
    members, digests = demo["digests"][DIGEST_HANDLER]
    assert members == failures, "every failure is in exactly one digest"
    assert digests == sum(demo["runs"][DIGEST_HANDLER].values())
    # The burst's 40 failures per machine arrive within one window: one digest each.
    assert BURST <= digests < failures // 4
