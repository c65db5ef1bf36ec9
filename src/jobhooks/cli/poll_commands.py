"""``poll`` and ``job-types [sync]``: pull mode from a terminal."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from jobhooks.cli.app import ConfigOption, app, console, err_console, fail, notice, setup_logging
from jobhooks.cli.common import (
    LogFormatOption,
    LogLevelOption,
    StrictOption,
    choose_config,
    run_until_stopped,
    runtime_or_exit,
    setup_process_logging,
    with_store,
)
from jobhooks.cli.operator_commands import DEFAULT_URL, TokenOption, UrlOption, _call
from jobhooks.cli.output import Column, JsonOption, listing, print_json, when
from jobhooks.config.defaults import default_config, resolve_database
from jobhooks.config.load import read_config
from jobhooks.config.locate import ConfigChoice
from jobhooks.config.schema import JobhooksConfig
from jobhooks.errors import ConfigError, LeaseLost, PlatformError, StoreError
from jobhooks.intake import LeasePolicy, RunPlanner
from jobhooks.platform.client import build_clients, describe_credential
from jobhooks.platform.rest import PlatformApi
from jobhooks.poll.catalog import CatalogEntry, fetch_catalog
from jobhooks.poll.sinks import PollReport
from jobhooks.poll.wiring import build_poller
from jobhooks.registry import load_for_serving
from jobhooks.service.startup import settings
from jobhooks.store import Store
from jobhooks.store.catalog import page_position
from jobhooks.store.engine import is_sqlite, sqlite_path
from jobhooks.store.nodes import NodeIdentity


def _platform_config(choice: ConfigChoice) -> JobhooksConfig:
    problems: list[str] = []
    if choice.path is None:
        parsed = default_config()
    else:
        try:
            parsed, problems = read_config(choice.path)
        except ConfigError as exc:
            fail(f"cannot use {choice.path}", *exc.problems)
    refused = [problem for problem in problems if problem.startswith("[platform] url")]
    if refused:  # a url refused is left out of what was read: it is not "not set"
        fail(f"cannot use {choice.describe()}", *refused)
    if not parsed.platform.url:
        fail(
            f"{choice.describe()}: [platform] url is not set",
            "pull mode reads the platform's REST API: set [platform] url and credentials",
        )
    return parsed


async def _fetch(parsed: JobhooksConfig) -> list[CatalogEntry]:
    clients = build_clients(parsed.platform)
    try:
        api = PlatformApi(clients.async_client, describe_credential(parsed.platform))
        return await fetch_catalog(api, parsed.poll.page_size)
    finally:
        await clients.aclose()


def _summary(report: PollReport) -> str:
    runs = sum(len(e.handlers) for e in report.emitted)
    verb = "would create" if report.dry_run else "created"
    parts = [
        f"read {report.rows} rows in {report.pages} pages ({report.mode})",
        f"{verb} {report.created} completions ({runs} handler runs)",
    ]
    if report.duplicates:
        parts.append(f"{report.duplicates} already reported by a check-in")
    parts.append(f"{report.opened} newly seen running")
    if report.skipped:
        parts.append(f"{report.skipped} skipped (ended before [poll] start)")
    if report.malformed:
        parts.append(f"{report.malformed} malformed (see the log)")
    if report.gone:
        parts.append(f"{report.gone} deleted while running")
    return "; ".join(parts)


def _emitted_table(report: PollReport) -> Table:
    title = "Completions this poll would create" if report.dry_run else "Completions created"
    table = Table(title=title, title_justify="left")
    for column in ("job history id", "machine", "job type", "result", "retries", "handlers"):
        table.add_column(column, overflow="fold")
    for item in report.emitted:
        table.add_row(
            str(item.job_history_id),
            item.client_machine,
            item.job_type,
            item.job_result,
            str(item.current_retry_count),
            ", ".join(item.handlers) or "(none)",
        )
    return table


async def _poll_once(
    store: Store,
    config_path: Path | None,
    parsed: JobhooksConfig,
    *,
    dry_run: bool,
    strict: bool = False,
) -> PollReport:
    """One poll: the catalog read from the platform (kept unless a dry run), the
    registrations built with it, then the history from the stored position to its end."""
    try:
        fetched = await _fetch(parsed)
    except PlatformError as exc:
        if dry_run:
            raise
        err_console.print(
            f"the job type catalog was not synced ({exc}); using the stored one", markup=False
        )
        fetched = []
    if fetched and not dry_run:
        await store.pull.save_catalog([(entry.name, entry.id) for entry in fetched])
    names = {**await store.pull.catalog(), **{entry.name: entry.id for entry in fetched}}
    try:
        loaded = load_for_serving(config_path, names, strict=strict)
    except ConfigError as exc:
        fail(f"refusing to poll: {config_path} is invalid", *exc.problems)
    node = NodeIdentity.of_this_process()
    if not dry_run:
        # A heartbeat keeps the lease while a long catch-up runs; a kill frees it at once.
        await store.start_heartbeat(node, lambda: True)
    planner = RunPlanner(LeasePolicy(parsed.server.lease))
    clients = build_clients(parsed.platform)
    try:
        poller = build_poller(
            store,
            clients,
            loaded.config,
            lambda job_type_id: planner.plan(loaded.registry, job_type_id),
            node_id=node.id,
        )
        if dry_run:
            return await poller.poll_once(dry_run=True)
        if not await poller.acquire():
            holder, until = await store.pull.holder(poller.feed)
            left = until - time.time()
            if 0 < left <= parsed.poll.lease + 1:
                # A node that is alive renews its lease; one that stalled lets it run out.
                err_console.print(
                    f"{holder} holds the poller's lease for {left:.1f} s more; "
                    "waiting to see whether it renews it",
                    markup=False,
                )
                await asyncio.sleep(left + 0.2)
            if not await poller.acquire():
                fail(
                    f"{holder or 'another node'} is polling this platform now (it holds the "
                    "poller's lease); stop it, or let it poll, and try again"
                )
        try:
            return await poller.poll_once()
        finally:
            await poller.release()
    finally:
        await clients.aclose()


@app.command()
def poll(
    config: ConfigOption = None,
    once: Annotated[
        bool,
        typer.Option("--once", help="Poll once, report, and exit (whatever [poll] enabled says)."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="With --once: print what would be created; store nothing."),
    ] = False,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
    strict: StrictOption = False,
) -> None:
    """Follow the platform's job history: once (--once), or until stopped (a poll-only node)."""
    choice = choose_config(config)
    setup_process_logging(choice, log_level, log_format, "warning" if once else "info")
    if dry_run and not once:
        fail("--dry-run goes with --once")
    parsed = _platform_config(choice)
    if not once:
        runtime = runtime_or_exit(choice, with_worker=False, poll=True, strict=strict)
        notice(
            f"jobhooks polling {parsed.platform.url} every {parsed.poll.interval:g} s; "
            "SIGTERM stops."
        )
        run_until_stopped(runtime)
        return
    with contextlib.ExitStack() as scratch:
        stored = parsed
        if dry_run and _not_created_yet(parsed, choice.path):
            # Deciding needs a database; the configured one is not created for that.
            folder = scratch.enter_context(tempfile.TemporaryDirectory(prefix="jobhooks-dry-"))
            notice("no database yet: deciding as the first poll would, in a scratch one")
            stored = _with_database(parsed, f"sqlite:///{Path(folder) / 'dry-run.db'}")
        report = _poll_report(choice, parsed, stored, dry_run=dry_run, strict=strict)
    if report.emitted:
        console.print(_emitted_table(report))
    tail = " Nothing was stored (dry run)." if dry_run else ""
    console.print(f"{_summary(report)}.{tail}", markup=False, soft_wrap=True)


def _not_created_yet(parsed: JobhooksConfig, path: Path | None) -> bool:
    """Whether the configured database is an embedded one that does not exist yet."""
    url = resolve_database(parsed.server.database, path)
    file = sqlite_path(url) if is_sqlite(url) else None
    return file is not None and (not file.exists() or file.stat().st_size == 0)


def _with_database(parsed: JobhooksConfig, url: str) -> JobhooksConfig:
    server = parsed.server.model_copy(update={"database": url})
    return parsed.model_copy(update={"server": server})


def _poll_report(
    choice: ConfigChoice,
    parsed: JobhooksConfig,
    stored: JobhooksConfig,
    *,
    dry_run: bool,
    strict: bool,
) -> PollReport:
    try:
        return with_store(
            choice,
            lambda store: _poll_once(store, choice.path, parsed, dry_run=dry_run, strict=strict),
            stored,
        )
    except PlatformError as exc:
        fail(f"the platform could not be read: {exc}")
    except LeaseLost as exc:
        fail(str(exc))
    except StoreError as exc:
        fail(f"the database refused the poll's writes: {exc}")


JOB_TYPE_COLUMNS = (
    Column("GUID", "id"),
    Column("name"),
    Column("from"),
    Column("completions"),
    Column("first seen (UTC)", "time"),
)

job_types_app = typer.Typer(
    help="Job types known to jobhooks; 'sync' reads the platform's catalog.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(job_types_app, name="job-types")


@job_types_app.callback()
def job_types(
    ctx: typer.Context,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    as_json: JsonOption = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Read the catalog from this configuration's database, with no server "
            "running (instead of asking the server at --url).",
        ),
    ] = None,
) -> None:
    """List the job types known, with their GUIDs and where each comes from: synced (the
    platform's catalog), seen (in completions) or config ([job_types])."""
    if ctx.invoked_subcommand is not None:
        return
    rows = _stored_job_types(config) if config is not None else _served_job_types(url, token)
    if as_json:
        print_json(rows)
        return
    lines = []
    for row in rows:
        origin = row["origin"]
        named = row.get("config_name")
        if named and origin != "config":
            origin = f"{origin}, config ({named})"
        lines.append(
            (row["id"], row["name"], origin, str(row["completions"]), when(row.get("first_seen")))
        )
    console.print(listing(console, "Job types", JOB_TYPE_COLUMNS, lines))


def _served_job_types(url: str, token: str | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = _call("GET", url, "/api/v1/job-types", token, "items", limit=500, before=cursor)
        rows += page["items"]
        cursor = page.get("next")
        if not cursor:
            return rows


def _stored_job_types(config: Path) -> list[dict[str, Any]]:
    """The catalog as the server would list it, read from the configuration's database."""
    choice = choose_config(config)
    try:
        named = {str(guid): name for name, guid in settings(choice.path).job_types.items()}
    except ConfigError as exc:
        fail(f"cannot use {config}", *exc.problems)

    async def read(store: Store) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        after = None
        while True:
            page = (await store.reads.job_types(500, after, named)).as_json()
            rows += page["items"]
            if not page.get("next"):
                return rows
            after = page_position(page["next"])

    return with_store(choice, read)


@job_types_app.command("sync")
def job_types_sync(config: ConfigOption = None) -> None:
    """Read the job type catalog from the platform (store types and custom job types)
    into the database, so registrations may name job types."""
    setup_logging("WARNING")
    choice = choose_config(config)
    parsed = _platform_config(choice)
    try:
        entries = asyncio.run(_fetch(parsed))
    except PlatformError as exc:
        fail(f"the platform's job type catalog could not be read: {exc}")
    pairs = [(entry.name, entry.id) for entry in entries]
    count = with_store(choice, lambda store: store.pull.save_catalog(pairs))
    lines = [
        (str(entry.id), entry.name, entry.source)
        for entry in sorted(entries, key=lambda e: e.name.casefold())
    ]
    columns = (Column("GUID", "id"), Column("name"), Column("from"))
    console.print(listing(console, "Job types synced from the platform", columns, lines))
    console.print(f"Synced {count} job types from {parsed.platform.url}.", markup=False)
