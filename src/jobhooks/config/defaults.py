"""The built-in default configuration, and where a configuration's database is."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from jobhooks.config.schema import HandlerRegistration, JobhooksConfig, ServerSettings

__all__ = ["DEFAULT_DATA_DIR", "default_config", "resolve_database"]

DEFAULT_DATA_DIR = Path("jobhooks-data")


def default_config(data_dir: Path = DEFAULT_DATA_DIR) -> JobhooksConfig:
    """The built-in default: SQLite in ``data_dir`` and the ``log`` handler for every job."""
    return JobhooksConfig(
        server=ServerSettings(database=f"sqlite:///{data_dir / 'jobhooks.db'}"),
        handlers=[HandlerRegistration(name="log", type="log", job_types="*")],
    )


def resolve_database(url: str, config_path: Path | None) -> str:
    """A relative SQLite path is relative to the configuration file's folder."""
    if not url.startswith("sqlite") or config_path is None:
        return url
    database = make_url(url).database
    if not database or database == ":memory:" or Path(database).is_absolute():
        return url
    return f"sqlite:///{(config_path.parent / database).resolve()}"
