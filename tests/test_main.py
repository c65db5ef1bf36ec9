"""``python -m jobhooks``: the command, where only Python is on the PATH (a service
account's shell, a Windows jump host)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.server import child_env


def test_python_m_jobhooks_runs_the_command(tmp_path: Path) -> None:
    config = tmp_path / "jobhooks.toml"
    config.write_text('[[handlers]]\nname = "audit"\ntype = "log"\njob_types = "*"\n')

    result = subprocess.run(
        [sys.executable, "-m", "jobhooks", "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "audit" in result.stdout + result.stderr
