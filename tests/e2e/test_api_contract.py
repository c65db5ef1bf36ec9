"""``schemathesis run --checks all`` against a real server, every phase (examples, coverage,
fuzzing, stateful): the API answers as /openapi.json says it does."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from support import cli
from support.server import StartServer, child_env, write_config


def test_schemathesis_with_every_check_finds_nothing(
    tmp_path: Path, start_server: StartServer
) -> None:
    config = write_config(
        tmp_path,
        """
        [[handlers]]
        name = "log"
        type = "log"
        job_types = "*"
        """,
    )
    admin = cli.token(config, "--admin")
    server = start_server(config)
    command = shutil.which("schemathesis")
    assert command is not None, "schemathesis is a test dependency: pip install -e '.[test]'"

    # Dead runs are replayed by a handler's name: a name nobody registered is a 404, so
    # schemathesis is given the registered one to reach what comes after.
    settings = tmp_path / "schemathesis.toml"
    settings.write_text(
        '[[operations]]\ninclude-name = "POST /api/v1/handlers/{name}/replay-dead"\n'
        'parameters = { "path.name" = "log" }\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        [
            command,
            "--config-file",
            str(settings),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {admin}",
            "--max-examples",
            "25",
            "--seed",
            "20261204",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=tmp_path,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
