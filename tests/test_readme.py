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


# finding one's way

HEADING = re.compile(r"^(#{2,3}) (.+)$", re.MULTILINE)
LINK = re.compile(r"\[[^\]]+\]\(#([^)]+)\)")


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(text: str) -> dict[str, str]:
    """Every ``##`` and ``###`` heading outside code blocks, by its anchor."""
    prose = FENCE.sub("", text)
    return {slug(title): level for level, title in HEADING.findall(prose)}


def contents(text: str) -> list[str]:
    block = text.split("\n## Contents\n", 1)[1].split("\n---\n", 1)[0]
    return LINK.findall(block)


def test_every_section_is_listed_in_the_contents() -> None:
    text = readme()
    sections = [anchor for anchor, level in headings(text).items() if level == "##"]
    listed = contents(text)
    missing = [anchor for anchor in sections if anchor != "contents" and anchor not in listed]
    assert missing == [], f"sections missing from the contents: {missing}"
    assert listed.index(sections[1]) == 0 and len(set(listed)) == len(listed)


def test_every_link_of_the_contents_leads_to_a_heading() -> None:
    text = readme()
    anchors = headings(text)
    assert [link for link in contents(text) if link not in anchors] == []


def test_the_webhook_secret_recipe_makes_a_secret_the_webhook_handler_takes() -> None:
    from jobhooks.handlers.webhook import WebhookHandler
    from jobhooks.testing import make_handler

    (argv,) = commands(block_after("A signing secret is `whsec_`"))
    assert argv[0] == "python3"
    made = subprocess.run(
        [sys.executable, *argv[1:]], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    assert (
        made.startswith("whsec_")
        and made
        != subprocess.run(
            [sys.executable, *argv[1:]], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
    )
    handler = make_handler(WebhookHandler, url="https://hooks.example.com/jobhooks", secret=made)
    assert handler.secret is not None and handler.secret.reveal() == made
