"""Every verb takes the same configuration when --config is not given, and says which."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.server import ServerProcess, child_env, write_config

HANDLERS = """
[[handlers]]
name = "audit"
type = "log"
job_types = "*"
"""


def jobhooks_in(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``jobhooks ARGS`` run in ``folder`` with no JOBHOOKS_CONFIG unless given."""
    environment = child_env(**env)
    if "JOBHOOKS_CONFIG" not in env:
        environment.pop("JOBHOOKS_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "jobhooks.cli", *args],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder whose jobhooks.toml keeps its database somewhere else than the default."""
    write_config(tmp_path, HANDLERS, server='database = "sqlite:///elsewhere/jh.db"')
    return tmp_path


def test_a_token_created_beside_jobhooks_toml_is_accepted_by_serve_config_jobhooks_toml(
    folder: Path, tmp_path: Path
) -> None:
    created = jobhooks_in(folder, "token", "create", "--admin")
    assert created.returncode == 0, created.stderr
    database = folder / "elsewhere" / "jh.db"
    assert f"Using jobhooks.toml (./jobhooks.toml); database sqlite:///{database}" in (
        created.stderr
    )
    assert not (folder / "jobhooks-data").exists()
    server = ServerProcess(folder / "jobhooks.toml", tmp_path / "serve.log")
    try:
        server.start()
        with server.client(created.stdout.strip()) as client:
            assert client.get("/api/v1/handlers").status_code == 200
        assert f"database sqlite:///{database}" in server.log()
    finally:
        server.stop()


@pytest.mark.parametrize(
    "verb",
    [
        ("validate",),
        ("handlers",),
        ("test-handler", "audit"),
        ("token", "list"),
        ("db", "upgrade"),
    ],
    ids=" ".join,
)
def test_every_verb_reads_jobhooks_toml_in_the_current_folder(
    folder: Path, verb: tuple[str, ...]
) -> None:
    result = jobhooks_in(folder, *verb)
    assert result.returncode == 0, result.stderr
    using = [line for line in result.stderr.splitlines() if line.startswith("Using ")]
    assert using == [
        f"Using jobhooks.toml (./jobhooks.toml); database sqlite:///{folder / 'elsewhere/jh.db'}"
    ]


@pytest.mark.parametrize("verb", [("poll", "--once"), ("job-types", "sync")], ids=" ".join)
def test_pull_mode_verbs_read_jobhooks_toml_in_the_current_folder(
    folder: Path, verb: tuple[str, ...]
) -> None:
    result = jobhooks_in(folder, *verb)
    assert result.returncode == 1
    assert "jobhooks.toml (./jobhooks.toml): [platform] url is not set" in result.stderr


def test_without_a_local_file_jobhooks_config_names_it(folder: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = jobhooks_in(empty, "token", "list", JOBHOOKS_CONFIG=str(folder / "jobhooks.toml"))
    assert result.returncode == 0, result.stderr
    assert f"Using {folder / 'jobhooks.toml'} (JOBHOOKS_CONFIG)" in result.stderr


def test_without_either_the_built_in_default_is_used_and_named(tmp_path: Path) -> None:
    result = jobhooks_in(tmp_path, "token", "list")
    assert result.returncode == 0, result.stderr
    assert "Using the built-in default configuration" in result.stderr
    assert f"database sqlite:///{tmp_path / 'jobhooks-data/jobhooks.db'}" in result.stderr


@pytest.mark.parametrize("verb", ["serve", "worker"])
def test_serve_and_worker_read_jobhooks_toml_in_the_current_folder(folder: Path, verb: str) -> None:
    environment = child_env()
    environment.pop("JOBHOOKS_CONFIG", None)
    extra = ["--listen", "127.0.0.1:0"] if verb == "serve" else []
    process = subprocess.Popen(
        [sys.executable, "-m", "jobhooks.cli", verb, *extra],
        cwd=folder,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        while first and not first.startswith("Using "):
            first = process.stderr.readline()
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert first.startswith("Using jobhooks.toml (./jobhooks.toml); database sqlite:///"), first
    assert str(folder / "elsewhere" / "jh.db") in first
