"""Which configuration a command uses when --config is not given."""

from __future__ import annotations

from pathlib import Path

from jobhooks.config.locate import describe_database, locate_config


def test_config_given_on_the_command_line_wins(tmp_path: Path) -> None:
    (tmp_path / "jobhooks.toml").write_text("", encoding="utf-8")
    given = tmp_path / "elsewhere.toml"
    choice = locate_config(given, cwd=tmp_path, environ={"JOBHOOKS_CONFIG": "/etc/x.toml"})
    assert choice.path == given
    assert choice.reason == "--config"


def test_a_jobhooks_toml_in_the_current_folder_comes_next(tmp_path: Path) -> None:
    (tmp_path / "jobhooks.toml").write_text("", encoding="utf-8")
    choice = locate_config(None, cwd=tmp_path, environ={"JOBHOOKS_CONFIG": "/etc/x.toml"})
    assert choice.path == tmp_path / "jobhooks.toml"
    assert "./jobhooks.toml" in choice.describe()


def test_then_the_file_jobhooks_config_names(tmp_path: Path) -> None:
    choice = locate_config(None, cwd=tmp_path, environ={"JOBHOOKS_CONFIG": "/etc/x.toml"})
    assert choice.path == Path("/etc/x.toml")
    assert choice.describe() == "/etc/x.toml (JOBHOOKS_CONFIG)"


def test_else_the_built_in_default(tmp_path: Path) -> None:
    (tmp_path / "jobhooks.toml").mkdir()  # a folder of that name is not a configuration
    choice = locate_config(None, cwd=tmp_path, environ={"JOBHOOKS_CONFIG": " "})
    assert choice.path is None
    assert "built-in default" in choice.describe()


def test_a_shown_database_has_no_password_and_an_absolute_sqlite_path(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert describe_database("sqlite:///data/j.db") == f"sqlite:///{tmp_path / 'data/j.db'}"
    shown = describe_database("postgresql://jh:s3cret-pw@db.example.com/jobhooks")
    assert "s3cret-pw" not in shown and "db.example.com/jobhooks" in shown
