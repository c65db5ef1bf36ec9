"""The example configuration and the README: valid, and no invented names for the job type
GUIDs of Keyfactor Command's sample."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED_JOB_TYPES = {"7b6bbc1b-d802-4b09-bec9-f5c221083130", "44340a94-9b99-410d-8011-598fb176c3c5"}
_GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_NAMED = [
    re.compile(rf'^\s*"(?P<name>[^"]+)"\s*=\s*"(?P<guid>{_GUID})"', re.M),  # [job_types] entry
    re.compile(rf'"job_type":\s*"(?P<name>[^"]+)",\s*"job_type_id":\s*"(?P<guid>{_GUID})"'),
]


def test_the_example_configuration_validates(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "example-pw")
    monkeypatch.setenv("PAGERDUTY_URL", "pagerduty://integration-key@routing-key")
    result = cli("validate", "-c", str(ROOT / "examples" / "jobhooks.toml"))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("document", ["README.md", "examples/jobhooks.toml"])
def test_the_sample_job_type_guids_are_not_given_names(document: str) -> None:
    # Keyfactor Command's sample registration never names its two job type GUIDs, and ids
    # differ per platform: a name would only be a guess that misleads.
    text = (ROOT / document).read_text(encoding="utf-8")
    named = [
        (match["name"], match["guid"])
        for pattern in _NAMED
        for match in pattern.finditer(text)
        if match["guid"].lower() in SEED_JOB_TYPES
    ]
    assert named == []
