"""The README works as written: its first-handler walk-through, run as a reader runs it."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def readme() -> str:
    return README.read_text(encoding="utf-8")


def block_after(marker: str, text: str | None = None) -> str:
    """The first fenced code block after the first line containing ``marker``."""
    text = readme() if text is None else text
    start = text.index(marker)
    found = FENCE.search(text, start)
    assert found is not None, f"no code block after {marker!r}"
    return found.group(2)


def commands(block: str) -> list[list[str]]:
    """The commands of a ``sh`` block, comments dropped."""
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line]


def run(argv: list[str], cwd: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``argv`` as a shell runs it, with ``jobhooks`` and ``pytest`` from this environment."""
    programs = {
        "jobhooks": [sys.executable, "-m", "jobhooks.cli"],
        "pytest": [sys.executable, "-m", "pytest"],
    }
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBHOOKS_")}
    env.update(PYTHONPATH=str(site), COLUMNS="200", PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [*programs[argv[0]], *argv[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's acme-handlers package, written from its blocks and pip-installed into a
    folder of its own (returned, for PYTHONPATH)."""
    package = tmp_path_factory.mktemp("acme-handlers")
    (package / "acme_handlers").mkdir()
    (package / "acme_handlers" / "__init__.py").write_text("", encoding="utf-8")
    (package / "acme_handlers" / "recorder.py").write_text(
        block_after("`acme_handlers/recorder.py`:"), encoding="utf-8"
    )
    (package / "pyproject.toml").write_text(block_after("`pyproject.toml`:"), encoding="utf-8")
    site = tmp_path_factory.mktemp("site")
    command = [
        sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
        "--no-index", "--disable-pip-version-check", "--quiet", "--target", str(site), str(package),
    ]  # fmt: skip
    installed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return site


def test_the_first_handler_walk_through_runs_as_written(acme: Path, tmp_path: Path) -> None:
    site = acme
    (tmp_path / "jobhooks.toml").write_text(
        block_after("register it in `jobhooks.toml`:"), encoding="utf-8"
    )
    for argv in commands(block_after("Check it and fire it once")):
        result = run(argv, tmp_path, site)
        assert result.returncode == 0, f"{shlex.join(argv)}:\n{result.stdout}{result.stderr}"
    recorded = (tmp_path / "failures.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(recorded) == 1 and '"current_retry_count": 3' in recorded[0]


def test_the_handlers_unit_test_passes_as_written(acme: Path, tmp_path: Path) -> None:
    site = acme
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_recorder.py").write_text(
        block_after("`tests/test_recorder.py`:"), encoding="utf-8"
    )
    result = run(["pytest", "-q", "-p", "no:cacheprovider", "tests"], tmp_path, site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_the_recorder_refuses_a_folder_that_does_not_exist(acme: Path, tmp_path: Path) -> None:
    site = acme
    text = block_after("register it in `jobhooks.toml`:").replace(
        '"failures.jsonl"', f'"{tmp_path}/absent/failures.jsonl"'
    )
    (tmp_path / "jobhooks.toml").write_text(text, encoding="utf-8")
    result = run(["jobhooks", "validate"], tmp_path, site)
    assert result.returncode == 1
    assert f"property Path: the folder {tmp_path}/absent does not exist" in result.stderr
