"""``validate``, ``handlers`` and ``test-handler``: work on a configuration, store nothing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from jobhooks.cli.app import ConfigOption, app, console, err_console, fail, setup_logging
from jobhooks.cli.common import choose_config, say_using
from jobhooks.cli.output import Column, JsonOption, listing, print_json
from jobhooks.config.defaults import default_config, resolve_database
from jobhooks.config.load import read_config
from jobhooks.config.locate import ConfigChoice
from jobhooks.config.schema import MAX_STREAK, JobhooksConfig
from jobhooks.config.webconfig import read_manifest, read_webconfig, to_toml
from jobhooks.config.xml_text import decode_source
from jobhooks.dispatch.isolation import run_as_registered
from jobhooks.dispatch.outcome import Outcome
from jobhooks.errors import ConfigError, ContextError
from jobhooks.intake.rules import NotificationRule, rehearse
from jobhooks.platform.client import build_clients
from jobhooks.registry import Registry, build_registry
from jobhooks.registry.discovery import HandlerTypeError, installed_types, load_handler_type
from jobhooks.registry.matching import RegisteredHandler
from jobhooks.registry.properties import property_specs
from jobhooks.sdk.context import canonical_key
from jobhooks.sdk.enums import JobResult
from jobhooks.sdk.secret import Secret
from jobhooks.store.catalog import resolvable_names
from jobhooks.store.database import peek
from jobhooks.testing import sample_context


def _read(choice: ConfigChoice) -> tuple[JobhooksConfig, list[str]]:
    if choice.path is None:
        return default_config(), []
    try:
        return read_config(choice.path)
    except ConfigError as exc:
        fail(f"cannot use {choice.path}", *exc.problems)


def _load(choice: ConfigChoice) -> tuple[JobhooksConfig, Registry, list[str]]:
    config, problems = _read(choice)
    database = resolve_database(config.server.database, choice.path)
    say_using(choice, database)
    # Names of job types synced or seen resolve too, when the database already exists.
    catalog = peek(database, resolvable_names)
    registry, handler_problems = build_registry(config, catalog)
    return config, registry, problems + handler_problems


def _job_types_text(registered: RegisteredHandler) -> str:
    if registered.runs_for_all:
        return "* (every job type)"
    return "\n".join(registered.job_type_labels)


def _when_text(registered: RegisteredHandler) -> str:
    shown = registered.when.describe()
    if registered.grouping is not None:
        shown += f"\ndigest {registered.grouping.describe()}"
    return shown


_REGISTERED = [
    Column("name", "id", width=1),
    Column("type"),
    Column("job types", "id", width=1),
    Column("when"),
    Column("timeout"),
    Column("attempts"),
    Column("backoff"),
    Column("isolation"),
]
"""The registered handlers' columns: names and job types (GUIDs) are never broken."""


def _registered_table(registry: Registry, *, with_properties: bool = False) -> Table:
    columns = [*_REGISTERED, Column("properties")] if with_properties else _REGISTERED
    rows = []
    for registered in registry:
        policy = registered.policy
        row = [
            registered.name,
            registered.type_name,
            _job_types_text(registered),
            _when_text(registered),
            f"{policy.timeout:g} s",
            str(policy.max_attempts),
            f"{policy.backoff:g} s",
            policy.isolation,
        ]
        if with_properties:
            row.append(
                "\n".join(
                    f"{spec.name}={_show_value(getattr(registered.handler, spec.name))}"
                    for spec in property_specs(type(registered.handler))
                )
            )
        rows.append(row)
    return listing(console, "Registered handlers", columns, rows)


def _print_problems(config_path: Path | None, problems: list[str]) -> None:
    count = len(problems)
    shown = escape(str(config_path or "the built-in default"))
    err_console.print(
        f"[bold red]✗[/] {shown}: {count} problem{'s' if count != 1 else ''}", markup=True
    )
    for problem in problems:
        err_console.print(f"  - {problem}", markup=False, soft_wrap=True)


@app.command()
def validate(config: ConfigOption = None) -> None:
    """Check a whole configuration and list every problem with where it is."""
    choice = choose_config(config)
    _config, registry, problems = _load(choice)
    if problems:
        _print_problems(choice.path, problems)
        raise typer.Exit(1)
    console.print(_registered_table(registry))
    count = len(registry)
    shown = choice.path or "the built-in default"
    console.print(
        f"✓ {shown} is valid: {count} handler{'s' if count != 1 else ''} registered",
        markup=False,
    )


def _show_value(value: object) -> str:
    if isinstance(value, Secret):
        return value.masked()
    if isinstance(value, list | tuple):
        return ", ".join(_show_value(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}: {_show_value(item)}" for key, item in value.items())
    return str(value)


def _json_value(value: object) -> object:
    if isinstance(value, Secret):
        return value.masked()
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _handlers_json(registry: Registry, problems: list[str]) -> dict[str, Any]:
    registered = [
        {
            "name": handler.name,
            "type": handler.type_name,
            "job_types": "*" if handler.runs_for_all else [str(g) for g in handler.job_types],
            "when": handler.when.describe(),
            "digest": handler.grouping.describe() if handler.grouping else None,
            "timeout": handler.policy.timeout,
            "max_attempts": handler.policy.max_attempts,
            "backoff": handler.policy.backoff,
            "isolation": handler.policy.isolation,
            "properties": {
                spec.pascal_name: _json_value(getattr(handler.handler, spec.name))
                for spec in property_specs(type(handler.handler))
            },
        }
        for handler in registry
    ]
    installed: list[dict[str, Any]] = []
    for name, entry in installed_types().items():
        row: dict[str, Any] = {"type": name, "class": entry.value, "properties": [], "error": None}
        try:
            specs = property_specs(load_handler_type(name))
        except HandlerTypeError as exc:
            row["error"] = str(exc)
            specs = ()
        row["properties"] = [
            {
                "name": spec.pascal_name,
                "expected": spec.type_text,
                "required": spec.required,
                "secret": spec.secret,
                "default": None if spec.required or spec.secret else _json_value(spec.default),
            }
            for spec in specs
        ]
        installed.append(row)
    return {"registered": registered, "installed": installed, "problems": problems}


@app.command()
def handlers(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List the registered handlers, and the installed handler types with their properties."""
    choice = choose_config(config)
    _config, registry, problems = _load(choice)
    if as_json:
        print_json(_handlers_json(registry, problems))
        if problems:
            _print_problems(choice.path, problems)
            raise typer.Exit(1)
        return
    console.print(_registered_table(registry, with_properties=True))
    types = Table(title="Installed handler types", title_justify="left")
    for column in ("type", "class", "property", "expected", "default"):
        types.add_column(column, overflow="fold")
    for name, entry in installed_types().items():
        try:
            handler_class = load_handler_type(name)
        except HandlerTypeError as exc:
            types.add_row(name, entry.value, "", f"cannot load: {exc}", "", end_section=True)
            continue
        specs = property_specs(handler_class)
        if not specs:
            types.add_row(name, entry.value, "(none)", "", "", end_section=True)
        for position, spec in enumerate(specs):
            default = "secret" if spec.secret and not spec.required else spec.shown_default()
            types.add_row(
                name if position == 0 else "",
                entry.value if position == 0 else "",
                spec.pascal_name,
                spec.type_text,
                default,
                end_section=position == len(specs) - 1,
            )
    console.print(types)
    if problems:
        _print_problems(choice.path, problems)
        raise typer.Exit(1)


@app.command("test-handler")
def test_handler(
    name: Annotated[str, typer.Argument(help="Name of the registered handler to run.")],
    config: ConfigOption = None,
    result: Annotated[
        str | None,
        typer.Option(
            help="Job result: success, warning, failure, unknown or a number "
            "(default: the --context-json file's, else failure)."
        ),
    ] = None,
    retry_count: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="current_retry_count of the job (default: the --context-json file's, else 0).",
        ),
    ] = None,
    streak: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=MAX_STREAK,
            help="The job's consecutive failures (with this completion, for a failure; before "
            "it, for a success): evaluates the handler's rules (when) first and says whether "
            "and why they fire.",
        ),
    ] = None,
    job_type_id: Annotated[
        str | None, typer.Option(help="Job type GUID (default: the handler's first job type).")
    ] = None,
    context_json: Annotated[
        Path | None, typer.Option(help="A JSON file with context fields to start from.")
    ] = None,
    show_traceback: Annotated[
        bool, typer.Option("--traceback", help="Print the handler's traceback on failure.")
    ] = False,
) -> None:
    """Run one registered handler once on a sample context; nothing is stored. With rules
    (when), say first whether and why they fire for the job's --streak, and run the handler
    only if they do (exit 0 either way)."""
    setup_logging()
    choice = choose_config(config)
    loaded_config, registry, problems = _load(choice)
    registered = registry.get(name)
    if registered is None:
        relevant = [p for p in problems if f"{name!r}" in p] or problems
        if relevant:
            _print_problems(choice.path, relevant)
        known = ", ".join(h.name for h in registry) or "none"
        where = choice.path or "the built-in default"
        fail(f"no valid handler named {name!r} in {where} (valid handlers: {known})")
    overrides: dict[str, Any] = {}
    if context_json is not None:
        try:
            loaded = json.loads(context_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            fail(f"cannot read {context_json}: {exc}")
        if not isinstance(loaded, dict):
            fail(f"{context_json}: expected a JSON object of context fields")
        overrides.update({canonical_key(key) or key: value for key, value in loaded.items()})
    if result is not None or "job_result" not in overrides:
        try:
            overrides["job_result"] = JobResult.parse(result or "failure")
        except ValueError as exc:
            fail(f"--result: {exc}")
    if streak == 0 and overrides["job_result"] is JobResult.FAILURE:
        fail(
            "--streak: a failure is the 1st consecutive failure of its job at least: give 1 or more"
        )
    if retry_count is not None or "current_retry_count" not in overrides:
        failures = streak or 0
        if streak and overrides["job_result"] is JobResult.FAILURE:
            failures -= 1  # the count before this completion
        overrides["current_retry_count"] = retry_count if retry_count is not None else failures
    if job_type_id is not None:
        overrides["job_type_id"] = job_type_id
    elif "job_type_id" not in overrides and registered.job_types:
        overrides["job_type_id"] = str(registered.job_types[0])
    names = {guid: name for name, guid in loaded_config.job_types.items()}
    chosen = overrides.get("job_type_id")
    if chosen is not None and "job_type" not in overrides:
        with contextlib.suppress(ValueError):
            overrides["job_type"] = names.get(uuid.UUID(str(chosen)), "Inventory")
    try:
        context = sample_context(**overrides)
    except ContextError as exc:
        fail("the sample context is invalid", *(str(p) for p in exc.problems))
    if not registered.when.always:
        decision = rehearse(
            NotificationRule(registered.when),
            context.job_result,
            # Played through failure by failure: a retry count from a context file is
            # counted as the longest streak a rule knows at most.
            streak
            if streak is not None
            else min(context.current_retry_count + context.failed, MAX_STREAK),
            job_type=context.job_type,
            job_id=str(context.job_id),
            client_machine=context.client_machine,
            at=time.time(),
        )
        if decision.trigger is None:
            console.print(f"{registered.name}: {decision.note} (the handler was not run)")
            return
        console.print(
            f"{registered.name} fires: {decision.trigger.kind}: {decision.trigger.reason}",
            markup=False,
        )
        context = dataclasses.replace(context, trigger=decision.trigger)
    clients = build_clients(loaded_config.platform)
    console.print(
        f"Running {registered.name} ({registered.type_name}) on a sample {context.job_type} job, "
        f"result {context.job_result.display}, retry count {context.current_retry_count}, "
        f"job type {context.job_type_id}"
    )

    async def attempt() -> Outcome:
        try:
            with_clients = dataclasses.replace(
                context, client=clients.client, async_client=clients.async_client
            )
            return await run_as_registered(registered, with_clients)
        finally:
            await clients.aclose()

    with _handler_log() as said:
        outcome = asyncio.run(attempt())
    duration = f"{outcome.duration * 1000:.1f} ms"
    for message in said:
        console.print(f"{registered.name}: {message}", markup=False, soft_wrap=True)
    if outcome.succeeded:
        console.print(f"[green]✓ succeeded[/] in {duration} (nothing was stored)", markup=True)
        return
    console.print(f"[red]✗ failed[/] after {duration} (nothing was stored)", markup=True)
    console.print(outcome.error or "", markup=False, soft_wrap=True)
    if outcome.traceback and show_traceback:
        console.print(outcome.traceback, markup=False, soft_wrap=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def _handler_log() -> Iterator[list[str]]:
    """What built-in handlers log while they run (at debug level too: why they sent
    nothing, for one), collected to be shown after the attempt."""
    said: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    handlers = logging.getLogger("jobhooks.handlers")
    collect, level, propagate = Collect(logging.DEBUG), handlers.level, handlers.propagate
    handlers.addHandler(collect)
    handlers.setLevel(logging.DEBUG)
    handlers.propagate = False  # shown once, after the attempt
    try:
        yield said
    finally:
        handlers.removeHandler(collect)
        handlers.setLevel(level)
        handlers.propagate = propagate


def _write_output(output: Path, text: str, *, source: Path, force: bool) -> None:
    """Write ``text`` to ``output`` whole or not at all: into a new file of its own beside
    it first, then moved into place (a device or a pipe, such as /dev/stdout, is written
    to as it is). Without ``force`` the move refuses a file that exists, even one made
    meanwhile."""
    if output.is_dir():
        fail(f"--output {output} is a folder; name a file")
    if output.exists():
        if output.samefile(source):
            fail(f"--output {output} is the file being read; name another")
        if not force:
            fail(f"{output} exists; give --force to replace it, or name another with --output")
        output = output.resolve()  # a link keeps pointing where it did
    try:
        if output.exists() and not output.is_file():
            with output.open("w", encoding="utf-8") as stream:
                stream.write(text)
            return
        # mkstemp creates the file itself (never through a link planted at its name).
        handle, name = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
        partial = Path(name)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
            if output.exists():
                shutil.copymode(output, partial)
                os.replace(partial, output)
            else:
                os.chmod(partial, 0o666 & ~_umask())
                _move_into_new(partial, output)
        finally:
            partial.unlink(missing_ok=True)
    except FileExistsError:
        fail(f"{output} exists; give --force to replace it, or name another with --output")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")


def _move_into_new(partial: Path, output: Path) -> None:
    """Give ``partial`` the name ``output`` unless a file has that name: a hard link
    refuses one made since the look before (where the file system has no hard links, a
    rename after one more look)."""
    try:
        os.link(partial, output)
    except FileExistsError:
        raise
    except OSError:
        if output.exists():
            raise FileExistsError(output) from None
        os.replace(partial, output)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@app.command("import-webconfig")
def import_webconfig(
    source: Annotated[
        Path,
        typer.Argument(
            help="web.config (Unity), <register> elements copied from one or from the "
            "documentation (no root element needed), or an extension manifest.json."
        ),
    ],
    include_commented: Annotated[
        bool,
        typer.Option("--include-commented", help="Also read registrations inside XML comments."),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the TOML to this new file instead of stdout."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the file --output names if it exists.")
    ] = False,
) -> None:
    """Turn Keyfactor Command handler registrations into jobhooks.toml [[handlers]] tables."""
    try:
        content = source.read_bytes()
    except OSError as exc:
        fail(f"cannot read {source}: {exc.strerror}")
    try:
        text = decode_source(content)
        if source.suffix.lower() == ".json":
            result = read_manifest(text)
        else:
            result = read_webconfig(text, include_commented=include_commented)
    except ValueError as exc:
        fail(f"{source}: {exc}")
    toml_text = to_toml(result)
    if output is None:
        typer.echo(toml_text, nl=False)
    else:
        _write_output(output, toml_text, source=source, force=force)
        err_console.print(f"Wrote {len(result.handlers)} registration(s) to {output}", markup=False)
    for note in result.notes:
        err_console.print(f"note: {note}", markup=False)
    for handler in result.handlers:
        for flag in handler.flags:
            err_console.print(f"FLAG {handler.name}: {flag}", markup=False)
    for variable, origin in result.environment.items():
        err_console.print(f"set {variable} (it holds {origin})", markup=False)
