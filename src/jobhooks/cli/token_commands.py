"""``token create | list | revoke``: API tokens, stored hashed."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from jobhooks.cli.app import ConfigOption, app, console, fail
from jobhooks.cli.common import choose_config, with_store
from jobhooks.cli.output import Column, JsonOption, listing, print_json, when
from jobhooks.store.tokens import token_id_of

token = typer.Typer(help="API tokens: agent, admin and viewer.", no_args_is_help=True)
app.add_typer(token, name="token")


@token.command("create")
def token_create(
    config: ConfigOption = None,
    agent: Annotated[
        str | None, typer.Option(help="Agent id (GUID) this token may report completions for.")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="An operator token.")] = False,
    viewer: Annotated[bool, typer.Option("--viewer", help="A read-only operator token.")] = False,
    label: Annotated[
        str | None, typer.Option(help="A note to recognise the token by (200 characters at most).")
    ] = None,
) -> None:
    """Create a token and print it (only the token, once; it is stored hashed)."""
    if sum((agent is not None, admin, viewer)) != 1:
        fail("give exactly one of --agent ID, --admin or --viewer")
    if label is not None and len(label) > 200:
        fail(f"--label: {len(label)} characters; 200 at most")
    agent_id = None
    if agent is not None:
        try:
            agent_id = uuid.UUID(agent)
        except ValueError:
            fail(f"--agent: not a GUID: {agent!r}")
    role = "agent" if agent_id else "admin" if admin else "viewer"
    secret, _info = with_store(
        choose_config(config), lambda store: store.tokens.create(role, agent_id, label)
    )
    typer.echo(secret)


@token.command("list")
def token_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List tokens (their ids and roles; the tokens themselves are not kept)."""
    rows = with_store(choose_config(config), lambda store: store.tokens.all())
    if as_json:
        print_json(
            [
                {
                    "id": info.id,
                    "role": info.role,
                    "agent_id": str(info.agent_id) if info.agent_id else None,
                    "label": info.label,
                    "created_at": info.created_at,
                    "revoked_at": info.revoked_at,
                }
                for info in rows
            ]
        )
        return
    columns = (
        Column("id", "id", width=12),
        Column("role"),
        Column("agent", "id") if any(info.agent_id for info in rows) else Column("agent"),
        Column("label"),
        Column("created (UTC)", "time"),
        Column("revoked (UTC)", "time"),
    )
    lines = [
        (
            info.id,
            info.role,
            str(info.agent_id or ""),
            info.label or "",
            when(info.created_at),
            when(info.revoked_at),
        )
        for info in rows
    ]
    console.print(listing(console, "Tokens", columns, lines))


@token.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="Token id from 'token list', or the token.")],
    config: ConfigOption = None,
) -> None:
    """Revoke a token (servers stop accepting it within 10 seconds)."""
    found = with_store(choose_config(config), lambda store: store.tokens.revoke(token_id))
    shown = token_id_of(token_id)  # a whole token's secret is never printed back
    if not found:
        fail(f"no active token {shown!r} (see 'jobhooks token list')")
    typer.echo(f"Revoked {shown}.")
