"""``completions``, ``runs``, ``replay``: the operator API from a terminal (``job-types`` is
in :mod:`jobhooks.cli.poll_commands`, beside its ``sync``)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.table import Table

from jobhooks.cli.app import app, console, fail
from jobhooks.cli.output import Column, JsonOption, listing, print_json, when

UrlOption = Annotated[
    str,
    typer.Option(envvar="JOBHOOKS_URL", help="Base URL of a running jobhooks API."),
]
TokenOption = Annotated[
    str | None,
    typer.Option(envvar="JOBHOOKS_TOKEN", help="An admin (or, to read, viewer) token."),
]
DEFAULT_URL = "http://127.0.0.1:8080"


def _segment(value: str) -> str:
    """``value`` as one segment of a URL path: '/', '?', '#', '%' and spaces encoded, and
    '.' or '..' too, so an id or a name never reaches another address."""
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")


def _call(
    method: str, url: str, path: str, token: str | None, *keys: str, **params: Any
) -> dict[str, Any]:
    """The JSON object the API answers, which has ``keys``; exit 1 saying why not."""
    if not token:
        fail("an operator token is needed: pass --token or set JOBHOOKS_TOKEN")
    if not (token.isascii() and token.isprintable()):
        # Never quoted: it may be a real token with a stray character.
        fail(
            "the token holds a character other than printable ASCII, so it is none "
            "jobhooks issued: check --token or JOBHOOKS_TOKEN"
        )
    query = {key: value for key, value in params.items() if value is not None}
    try:
        target = httpx.URL(url.rstrip("/") + path)
    except httpx.InvalidURL as exc:
        fail(f"--url: {url!r} is not a usable URL ({exc})")
    try:
        response = httpx.request(
            method,
            target,
            params=query,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach jobhooks at {url}: {exc}")
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        detail = body.get("detail") if isinstance(body, dict) else None
        shown = str(detail) if detail is not None else response.text[:200]
        fail(f"{method} {path} answered {response.status_code}: {shown}")
    if not isinstance(body, dict) or any(key not in body for key in keys):
        fail(
            f"{method} {path} answered {response.status_code}, but not a jobhooks API answer: "
            f"is {url} the address of a jobhooks server?"
        )
    return body


RUN_COLUMNS = (
    Column("run", "id"),
    Column("handler"),
    Column("status"),
    Column("attempts"),
    Column("finished (UTC)", "time"),
    Column("why"),
    Column("last error"),
)

COMPLETION_COLUMNS = (
    Column("id", "id"),
    Column("received (UTC)", "time"),
    Column("machine"),
    Column("job type"),
    Column("result"),
    Column("retries"),
)


def _runs_table(rows: list[dict[str, Any]], title: str) -> Table:
    lines = []
    for row in rows:
        trigger = row.get("trigger")
        why = f"{trigger['kind']}: {trigger['reason']}" if trigger else "every completion"
        status = row["status"]
        if row.get("group_size"):
            why = f"digest of {row['group_size']}; {why}"
        if row.get("closes_at"):
            status = f"{status} until {when(row['closes_at'])}"
        lines.append(
            (
                row["id"],
                row["handler"],
                status,
                f"{row['attempts']}/{row['max_attempts']}",
                when(row.get("finished_at")),
                why,
                (row.get("last_error") or "")[:200],
            )
        )
    return listing(console, title, RUN_COLUMNS, lines)


def _field(key: str, value: Any) -> str:
    if value is None:
        return ""
    moment = key.endswith(("_at", "_timestamp"))
    if moment and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{when(value)} UTC"
    return str(value)


@app.command()
def completions(
    completion_id: Annotated[str | None, typer.Argument(help="Show this completion.")] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    agent: Annotated[str | None, typer.Option(help="Agent id.")] = None,
    job: Annotated[str | None, typer.Option(help="Job id.")] = None,
    job_type: Annotated[str | None, typer.Option(help="Job type name.")] = None,
    result: Annotated[str | None, typer.Option(help="Job result, e.g. failure.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    as_json: JsonOption = False,
) -> None:
    """List recent completions, or show one with its handler runs."""
    if completion_id:
        detail = _call(
            "GET", url, f"/api/v1/job-completions/{_segment(completion_id)}", token, "handler_runs"
        )
        if as_json:
            print_json(detail)
            return
        fields = Table(title=f"Completion {completion_id}", title_justify="left", show_header=False)
        fields.add_column("field")
        fields.add_column("value", overflow="fold")
        for key, value in detail.items():
            if key not in ("handler_runs", "not_sent"):
                fields.add_row(key, _field(key, value))
        console.print(fields)
        console.print(_runs_table(detail["handler_runs"], "Handler runs"))
        for note in detail.get("not_sent", []):
            console.print(f"{note['handler']}: {note['reason']}", markup=False)
        return
    page = _call(
        "GET",
        url,
        "/api/v1/job-completions",
        token,
        "items",
        agent_id=agent,
        job_id=job,
        job_type=job_type,
        result=result,
        limit=limit,
    )
    if as_json:
        print_json(page["items"])
        return
    rows = [
        (
            row["id"],
            when(row["received_at"]),
            row["client_machine"],
            row["job_type"],
            row["job_result"],
            str(row["current_retry_count"]),
        )
        for row in page["items"]
    ]
    console.print(listing(console, "Completions (newest first)", COMPLETION_COLUMNS, rows))


@app.command()
def runs(
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    status: Annotated[
        str | None,
        typer.Option(help="collecting, pending, running, succeeded, failed, dead or held."),
    ] = None,
    handler: Annotated[str | None, typer.Option(help="Handler name.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    as_json: JsonOption = False,
) -> None:
    """List handler runs by status and handler."""
    page = _call(
        "GET",
        url,
        "/api/v1/handler-runs",
        token,
        "items",
        status=status,
        handler=handler,
        limit=limit,
    )
    if as_json:
        print_json(page["items"])
        return
    console.print(_runs_table(page["items"], "Handler runs (newest first)"))


@app.command()
def replay(
    run_id: Annotated[str | None, typer.Argument(help="The run to replay.")] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    handler: Annotated[
        str | None, typer.Option(help="Replay every dead run of this handler.")
    ] = None,
    dead: Annotated[bool, typer.Option("--dead", help="With --handler: its dead runs.")] = False,
) -> None:
    """Replay one run, or every dead run of a handler (--handler NAME --dead)."""
    if (run_id is None) == (handler is None):
        fail("give a RUN_ID, or --handler NAME --dead")
    if handler is not None:
        if not dead:
            fail("--handler replays dead runs only: add --dead to confirm")
        answer = _call(
            "POST", url, f"/api/v1/handlers/{_segment(handler)}/replay-dead", token, "replayed"
        )
        typer.echo(f"Replaying {answer['replayed']} dead run(s) of {handler}.")
        return
    assert run_id is not None  # one of the two, checked above
    answer = _call(
        "POST", url, f"/api/v1/handler-runs/{_segment(run_id)}/replay", token, "previous_status"
    )
    typer.echo(f"Run {run_id} is pending again (its status was {answer['previous_status']}).")
