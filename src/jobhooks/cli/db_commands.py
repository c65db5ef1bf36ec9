"""``db upgrade | backup | restore``: the database's schema, and copies of it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobhooks.cli.app import ConfigOption, app, fail
from jobhooks.cli.common import choose_config, say_using
from jobhooks.config.defaults import resolve_database
from jobhooks.config.locate import ConfigChoice
from jobhooks.errors import ConfigError, StoreError
from jobhooks.service.startup import settings
from jobhooks.store.backup import backup_sqlite, restore_sqlite
from jobhooks.store.database import upgrade_database
from jobhooks.store.migrate import head_revision

db = typer.Typer(help="The database: its schema, backups and restores.", no_args_is_help=True)
app.add_typer(db, name="db")


def _database(choice: ConfigChoice) -> str:
    try:
        url = resolve_database(settings(choice.path).server.database, choice.path)
    except ConfigError as exc:
        fail(f"cannot use {choice.path}", *exc.problems)
    say_using(choice, url)
    return url


@db.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Run the schema migrations the database lacks."""
    url = _database(choose_config(config))
    try:
        before, after = upgrade_database(url)
    except StoreError as exc:
        fail(str(exc))
    if before == after:
        typer.echo(f"The schema is up to date ({after}).")
    else:
        typer.echo(f"Upgraded the schema from {before or 'empty'} to {head_revision()}.")


@db.command("backup")
def db_backup(
    target: Annotated[Path, typer.Argument(help="The new file to write the copy to.")],
    config: ConfigOption = None,
) -> None:
    """Copy the SQLite database to a new file, safely while jobhooks runs (SQLite's
    online backup API; the copy passes an integrity check before it is kept)."""
    url = _database(choose_config(config))
    try:
        copied = backup_sqlite(url, target)
    except StoreError as exc:
        fail(str(exc))
    typer.echo(f"Backed up {copied.source} to {copied.target} ({copied.size:,} bytes).")


@db.command("restore")
def db_restore(
    backup: Annotated[Path, typer.Argument(help="A file written by 'jobhooks db backup'.")],
    config: ConfigOption = None,
) -> None:
    """Replace the SQLite database with a backup. Stop every serve, worker and poll
    process using it first: a restore refuses while one runs."""
    url = _database(choose_config(config))
    try:
        copied = restore_sqlite(url, backup)
    except StoreError as exc:
        fail(str(exc))
    if copied.set_aside is not None:
        typer.echo(f"The database could not be read; it is kept as {copied.set_aside}.")
    typer.echo(
        f"Restored {copied.target} from {copied.source}; start jobhooks again (runs that "
        "were running when the backup was taken are retried)."
    )
