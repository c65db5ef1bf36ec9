"""The example package, installed with pip and run by ``jobhooks test-handler`` in a subprocess.

The platform is a loopback server answering ``GET /KeyfactorAPI/OrchestratorJobs/JobHistory``
for one job; the notification goes through Apprise's ``json://`` to another one.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HttpReceiver, Received

ROOT = Path(__file__).resolve().parents[2]
JOBHOOKS = Path(sys.executable).with_name("jobhooks")
JOB_ID = uuid.UUID("9f0e2c44-1b7a-4d1e-8a53-0c2b6f1d7e90")
PASSWORD = "kf-pw-Xe55-never-print-me"
HISTORY_PATH = "/KeyfactorAPI/OrchestratorJobs/JobHistory"
ROWS = [
    {"JobHistoryId": 2172, "OperationStart": "2026-11-22T10:10:00", "Result": "Failure",
     "Message": "Access denied to store /etc/ssl (third time)"},
    {"JobHistoryId": 2171, "OperationStart": "2026-11-22T10:05:00", "Result": "Failure",
     "Message": "Access denied to store /etc/ssl"},
    {"JobHistoryId": 2160, "OperationStart": "2026-11-21T10:00:00", "Result": "Success",
     "Message": None},
]  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed with pip into a directory of its own (for PYTHONPATH).

    pip builds from a copy, so no build/ or egg-info lands in the source tree.
    """
    source = tmp_path_factory.mktemp("source") / "jobhistory-notifier"
    shutil.copytree(ROOT / "examples" / "jobhistory-notifier", source)
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps",
         "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return target


@pytest.fixture
def platform() -> Iterator[HttpReceiver]:
    """The job history of JOB_ID, for DOMAIN\\svc-jobhooks only, at the /KeyfactorAPI base."""
    receiver = HttpReceiver()
    expected = "Basic " + base64.b64encode(f"DOMAIN\\svc-jobhooks:{PASSWORD}".encode()).decode()

    def respond(request: Received) -> tuple[int, bytes]:
        if request.path != HISTORY_PATH:
            return 404, b"{}"
        if request.headers.get("authorization") != expected:
            return 401, b"{}"
        if request.query.get("pq.queryString") != [f'JobId -eq "{JOB_ID}"']:
            return 200, b"[]"
        return 200, json.dumps(ROWS).encode()

    receiver.respond = respond
    try:
        yield receiver
    finally:
        receiver.close()


def run_test_handler(
    installed: Path, tmp_path: Path, platform_url: str, notify_url: str, *args: str
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "jobhooks.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [platform]
            url = "{platform_url}/KeyfactorAPI"
            username = "DOMAIN\\\\svc-jobhooks"
            password = "env:KEYFACTOR_PASSWORD"

            [[handlers]]
            name = "failed-job-history"
            type = "jobhistory-notifier"
            job_types = "*"
            [handlers.properties]
            urls = "env:TEAMS_WEBHOOK_URL"
            history_rows = 3
            """
        ),
        encoding="utf-8",
    )
    context = tmp_path / "job.json"
    context.write_text(
        json.dumps({"JobId": str(JOB_ID), "JobType": "WinCertInventory",
                    "ClientMachine": "orch07.example.com", "Message": "Access denied"}),
    )  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(installed),
        "KEYFACTOR_PASSWORD": PASSWORD,
        "TEAMS_WEBHOOK_URL": notify_url,
        "COLUMNS": "200",
    }
    return subprocess.run(
        [str(JOBHOOKS), "test-handler", "failed-job-history", "-c", str(config),
         "--context-json", str(context), "--retry-count", "2", *args],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_installed_type_is_listed(installed: Path, tmp_path: Path) -> None:
    # In a folder without jobhooks.toml: the built-in default configuration.
    env = {k: v for k, v in os.environ.items() if k != "JOBHOOKS_CONFIG"}
    done = subprocess.run(
        [str(JOBHOOKS), "handlers"],
        env={**env, "PYTHONPATH": str(installed), "COLUMNS": "200"},
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "jobhistory-notifier" in done.stdout
    assert "jobhistory_notifier.handler:JobHistoryNotifier" in done.stdout


def test_a_failed_job_is_notified_with_the_platform_messages(
    installed: Path, tmp_path: Path, platform: HttpReceiver, http_receiver: HttpReceiver
) -> None:
    notify_url = f"json://127.0.0.1:{http_receiver.port}/teams"
    done = run_test_handler(installed, tmp_path, platform.url, notify_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout
    (query,) = platform.requests
    assert query.path == HISTORY_PATH
    assert query.headers["x-keyfactor-requested-with"] == "APIClient"
    assert query.headers["x-keyfactor-api-version"] == "1"
    assert query.query["pq.returnLimit"] == ["3"]
    (notification,) = http_receiver.requests
    assert notification.path == "/teams"
    document = json.loads(notification.body)
    assert document["title"] == "Orchestrator WinCertInventory job failed on orch07.example.com"
    body = document["message"]
    assert f"WinCertInventory job {JOB_ID} failed on orch07.example.com (retry count 2)" in body
    assert "Orchestrator message: Access denied" in body
    assert "2026-11-22T10:10:00  Failure: Access denied to store /etc/ssl (third time)" in body
    assert "2026-11-22T10:05:00  Failure: Access denied to store /etc/ssl" in body
    assert body.endswith("\n2026-11-21T10:00:00  Success:")
    assert PASSWORD not in done.stdout + done.stderr


def test_a_success_asks_nothing_and_notifies_nothing(
    installed: Path, tmp_path: Path, platform: HttpReceiver, http_receiver: HttpReceiver
) -> None:
    notify_url = f"json://127.0.0.1:{http_receiver.port}/teams"
    done = run_test_handler(installed, tmp_path, platform.url, notify_url, "--result", "success")
    assert done.returncode == 0, done.stdout + done.stderr
    assert platform.requests == [] and http_receiver.requests == []


def test_a_platform_that_refuses_fails_the_attempt(
    installed: Path, tmp_path: Path, platform: HttpReceiver, http_receiver: HttpReceiver
) -> None:
    notify_url = f"json://127.0.0.1:{http_receiver.port}/teams"
    platform.respond = lambda request: (503, b"maintenance")
    done = run_test_handler(installed, tmp_path, platform.url, notify_url)
    assert done.returncode == 1
    assert "HTTPStatusError" in done.stdout and "503" in done.stdout
    assert http_receiver.requests == []
