"""``jobhooks validate``, ``handlers`` and ``test-handler``, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from support.server import run_cli

WriteConfig = Callable[[str], Path]

INVENTORY = "7B6BBC1B-D802-4B09-BEC9-F5C221083130"
MANAGEMENT = "44340A94-9B99-410D-8011-598FB176C3C5"
LITERAL_SECRET = "literal-cli-secret-Pz4"

LOG = """
[[handlers]]
name = "audit"
type = "log"
job_types = "*"
"""


def recorder(module: str, out: Path, name: str = "recorder", kind: str = "Recorder") -> str:
    return f"""
[[handlers]]
name = "{name}"
type = "{module}:{kind}"
job_types = ["{INVENTORY}"]
[handlers.properties]
Path = "{out}"
"""


# validate


def test_validate_lists_the_registered_handlers(
    cli, write_config: WriteConfig, seed_toml: str, smtp_password: str
) -> None:
    path = write_config(seed_toml + LOG)
    result = cli("validate", "--config", str(path))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "SendEmail_RepeatedFailureHandler" in out
    assert "repeated-failure-email" in out
    assert INVENTORY.lower() in out and MANAGEMENT.lower() in out
    assert "audit" in out and "* (every job type)" in out
    assert "valid: 2 handlers registered" in out
    assert smtp_password not in result.output


@pytest.mark.parametrize(
    ("width", "name"),
    [(80, "record-inventory-failures"), (120, "record-failures-of-every-inventory-job")],
)
@pytest.mark.parametrize("verb", ["validate", "handlers"])
def test_registered_names_and_job_type_ids_are_never_broken_across_lines(
    cli,
    write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
    width: int,
    name: str,
    verb: str,
) -> None:
    """An operator copies a registration's name and its job types' GUIDs from here."""
    from jobhooks.cli.app import console

    monkeypatch.setattr(console, "width", width)
    path = write_config(
        f'[job_types]\n"Nightly PEM inventory" = "{INVENTORY}"\n'
        f'[[handlers]]\nname = "{name}"\ntype = "log"\n'
        f'job_types = "Nightly PEM inventory, {MANAGEMENT}"\n'
    )

    result = cli(verb, "--config", str(path))

    assert result.exit_code == 0, result.output
    for whole in (name, INVENTORY.lower(), MANAGEMENT.lower()):
        assert any(whole in line for line in result.stdout.splitlines()), (whole, result.stdout)


def test_names_and_values_from_the_file_are_shown_as_written(
    cli, write_config: WriteConfig
) -> None:
    """Brackets in a name or a template are text, not markup (a "[/" used to stop the
    listing with a markup error, and "[pki]" vanished from a subject)."""
    path = write_config(
        """
[[handlers]]
name = "audit-[bold]"
type = "notify"
job_types = "*"
[handlers.properties]
urls = ["json://127.0.0.1:9/hook"]
title = "[pki] {{ job_type }} failed [bold red]now[/]"
"""
    )

    for verb in ("validate", "handlers"):
        result = cli(verb, "--config", str(path))
        assert result.exit_code == 0, result.output
        assert "audit-[bold]" in result.stdout, verb
    assert "[pki] {{ job_type }} failed [bold red]now[/]" in result.stdout.replace("\n", "")


def test_validate_shows_job_type_names(cli, write_config: WriteConfig) -> None:
    text = f'[job_types]\n"Nightly PEM inventory" = "{INVENTORY}"\n' + LOG.replace(
        'job_types = "*"', 'job_types = ["Nightly PEM inventory"]'
    )
    result = cli("validate", "-c", str(write_config(text)))
    assert result.exit_code == 0, result.output
    assert f"Nightly PEM inventory ({INVENTORY.lower()})" in result.stdout


def test_validate_lists_every_problem_and_exits_1(
    cli, write_config: WriteConfig, seed_toml: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    text = (
        "[smpt]\nhost = 'x'\n"
        + seed_toml.replace("SmtpPort = 587", 'SmtpPort = "abc"')
        + LOG.replace('"log"', '"lgo"')
        + LOG.replace('job_types = "*"', "job_types = []")
    )
    path = write_config(text)
    result = cli("validate", "-c", str(path))
    assert result.exit_code == 1
    err = result.stderr
    assert "6 problems" in err
    assert "did you mean 'smtp'?" in err
    assert "property SmtpPort: expected an integer, got 'abc'" in err
    assert "SMTP_PASSWORD is not set" in err
    assert "unknown handler type 'lgo'; did you mean 'log'?" in err
    assert "duplicate handler name" in err
    assert "job_types is empty" in err
    assert f"({path} line " in err
    assert "valid:" not in result.stdout


def test_one_unset_variable_is_one_problem_without_follow_on_errors(
    cli, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    text = """
    [smtp]
    host = "smtp.example.com"
    port = 587
    username = "jobhooks@example.com"
    password = "env:SMTP_PASSWORD"
    mail_from = "jobhooks@example.com"

    [[handlers]]
    name = "mail"
    type = "send-email"
    job_types = "*"
    [handlers.properties]
    EmailRecipients = "pki-team@example.com"
    """
    result = cli("validate", "-c", str(write_config(text)))
    assert result.exit_code == 1
    assert "1 problem" in result.stderr
    assert "[smtp] password: environment variable SMTP_PASSWORD is not set" in result.stderr
    assert "host is empty" not in result.stderr


def test_validate_checks_that_ca_bundle_files_exist(
    cli, write_config: WriteConfig, tmp_path: Path
) -> None:
    text = f"""
    [platform]
    url = "https://keyfactor.example.com/KeyfactorAPI"
    ca_bundle = "{tmp_path}/keyfactor-ca.pem"
    """
    result = cli("validate", "-c", str(write_config(text + LOG)))
    assert result.exit_code == 1
    assert f"[platform] ca_bundle: no such file: {tmp_path}/keyfactor-ca.pem" in result.stderr


BESIDE = """
from jobhooks import JobCompleteContext, JobCompleteHandler


class Recorder(JobCompleteHandler):
    def run_handler(self, context: JobCompleteContext) -> bool:
        return True
"""


def test_a_module_beside_jobhooks_toml_needs_to_be_importable_and_it_says_how(
    tmp_path: Path,
) -> None:
    (tmp_path / "beside.py").write_text(BESIDE, encoding="utf-8")
    (tmp_path / "jobhooks.toml").write_text(
        '[[handlers]]\nname = "mine"\ntype = "beside:Recorder"\njob_types = "*"\n',
        encoding="utf-8",
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBHOOKS_")}
    env.pop("PYTHONPATH", None)
    # -P: the current folder is not on the path, as for the installed `jobhooks` command.
    command = [sys.executable, "-P", "-m", "jobhooks.cli", "validate"]
    refused = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    env["PYTHONPATH"] = str(tmp_path)
    accepted = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert refused.returncode == 1
    assert "no module named 'beside' (for type 'beside:Recorder')" in refused.stderr
    assert "a file beside jobhooks.toml is not found by itself" in refused.stderr
    assert "pip install ./your-package" in refused.stderr and "PYTHONPATH" in refused.stderr
    assert accepted.returncode == 0, accepted.stderr


def test_validate_with_a_missing_file_says_so(cli, tmp_path: Path) -> None:
    result = cli("validate", "-c", str(tmp_path / "absent.toml"))
    assert result.exit_code == 1
    assert "no such file" in result.stderr


def test_validate_reads_the_config_from_the_environment(cli, write_config: WriteConfig) -> None:
    path = write_config(LOG)
    result = cli("validate", env={"JOBHOOKS_CONFIG": str(path)})
    assert result.exit_code == 0, result.output
    assert "audit" in result.stdout


def test_validate_never_prints_a_secret(
    cli, write_config: WriteConfig, smtp_password: str, seed_toml: str
) -> None:
    secretive = seed_toml.replace('"env:SMTP_PASSWORD"', f'"{LITERAL_SECRET}"')
    platform = (
        f'[platform]\nurl = "https://kf.example.com"\nusername = "svc"\n'
        f'password = "{LITERAL_SECRET}-pf"\n'
    )
    valid = cli("validate", "-c", str(write_config(platform + secretive)))
    assert valid.exit_code == 0, valid.output
    broken = secretive.replace("SmtpPort = 587", 'SmtpPort = "abc"').replace(
        "Password =", "Pasword ="
    )
    invalid = cli("validate", "-c", str(write_config(platform + broken + "\nPassword = 12\n")))
    assert invalid.exit_code == 1
    assert "Pasword" in invalid.stderr
    for result in (valid, invalid):
        assert LITERAL_SECRET not in result.output
        assert smtp_password not in result.output


# handlers


def test_handlers_lists_registrations_and_installed_types_without_secrets(
    cli, write_config: WriteConfig, seed_toml: str, smtp_password: str
) -> None:
    secretive = seed_toml.replace('"env:SMTP_PASSWORD"', f'"{LITERAL_SECRET}"')
    result = cli("handlers", "-c", str(write_config(secretive)))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "SendEmail_RepeatedFailureHandler" in out
    assert "smtp_port=587" in out
    assert "email_recipients=pki-team@example.com, oncall@example.com" in out
    assert "password=**********" in out
    assert LITERAL_SECRET not in result.output
    for installed in ("log", "repeated-failure-email", "send-email"):
        assert installed in out
    assert "RetryThreshold" in out and "EmailRecipients" in out


def test_handlers_shows_an_env_reference_but_not_its_value(
    cli, write_config: WriteConfig, seed_toml: str, smtp_password: str
) -> None:
    result = cli("handlers", "-c", str(write_config(seed_toml)))
    assert result.exit_code == 0, result.output
    assert "password=env:SMTP_PASSWORD" in result.stdout
    assert smtp_password not in result.output


def test_handlers_masks_the_webhook_url_and_headers(cli, write_config: WriteConfig) -> None:
    # A webhook URL carries credentials (user info, a token, a secret path like Slack's),
    # and its headers carry API keys: the listing shows neither.
    url = "https://hookuser:hookpass-Qx3@hooks.example.com/services/T0SEC/B0SEC/XXsecXX?token=tq-Z7"
    hook = f"""
[[handlers]]
name = "hook"
type = "webhook"
job_types = "*"
[handlers.properties]
url = "{url}"
headers = {{ Authorization = "Bearer header-token-Wd2", "X-Tenant" = "tenant-Gh8" }}
"""
    result = cli("handlers", "--config", str(write_config(hook)))
    assert result.exit_code == 0, result.output
    assert "url=**********" in result.stdout
    assert "Authorization" in result.stdout and "X-Tenant" in result.stdout
    for secret in (
        "hookuser",
        "hookpass-Qx3",
        "T0SEC",
        "XXsecXX",
        "tq-Z7",
        "header-token-Wd2",
        "tenant-Gh8",
    ):
        assert secret not in result.output


def test_handlers_without_a_config_lists_installed_types(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JOBHOOKS_CONFIG", raising=False)
    result = cli("handlers")
    assert result.exit_code == 0, result.output
    assert "Using the built-in default configuration" in result.stderr
    assert "repeated-failure-email" in result.stdout
    assert "Level" in result.stdout


def test_handlers_with_a_missing_config_file_says_so(cli, tmp_path: Path) -> None:
    result = cli("handlers", "-c", str(tmp_path / "absent.toml"))
    assert result.exit_code == 1
    assert "absent.toml: no such file" in result.stderr


def test_handlers_as_json_for_scripts(
    cli, write_config: WriteConfig, seed_toml: str, smtp_password: str
) -> None:
    result = cli("handlers", "--json", "-c", str(write_config(seed_toml + LOG)))
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    seed, audit = listed["registered"]
    assert seed["name"] == "SendEmail_RepeatedFailureHandler"
    assert seed["job_types"] == [guid.lower() for guid in (INVENTORY, MANAGEMENT)]
    assert seed["properties"]["Password"] == "env:SMTP_PASSWORD"
    assert seed["properties"]["EmailRecipients"] == ["pki-team@example.com", "oncall@example.com"]
    assert audit["job_types"] == "*" and audit["max_attempts"] == 5
    log = next(row for row in listed["installed"] if row["type"] == "log")
    assert log["properties"] == [
        {
            "name": "Level",
            "expected": "one of 'debug', 'info', 'warning', 'error'",
            "required": False,
            "secret": False,
            "default": "info",
        }
    ]
    assert listed["problems"] == []
    assert smtp_password not in result.stdout


def test_handlers_exits_1_on_an_invalid_config(cli, write_config: WriteConfig) -> None:
    result = cli("handlers", "-c", str(write_config(LOG.replace('"*"', "[]"))))
    assert result.exit_code == 1
    assert "empty" in result.stderr


# test-handler


def test_test_handler_runs_the_log_handler_and_shows_what_it_logged(
    cli, write_config: WriteConfig
) -> None:
    path = write_config(LOG)
    result = cli(
        "test-handler", "audit", "-c", str(path), "--result", "failure", "--retry-count", "3"
    )
    assert result.exit_code == 0, result.output
    assert "✓ succeeded" in result.stdout
    assert "result Failure, retry count 3" in result.stdout
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("audit: {")]
    logged = json.loads(line.removeprefix("audit: "))
    assert logged["handler"] == "audit"
    assert logged["job_result"] == "Failure"
    assert logged["current_retry_count"] == 3


def test_test_handler_really_runs_the_handler(
    cli, write_config: WriteConfig, handler_types: str, tmp_path: Path
) -> None:
    out = tmp_path / "context.json"
    path = write_config(recorder(handler_types, out))
    result = cli("test-handler", "recorder", "-c", str(path), "--result", "warning")
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.stdout
    recorded = json.loads(out.read_text())
    assert recorded["job_result"] == "Warning"
    assert recorded["job_type_id"] == INVENTORY.lower(), "defaults to the handler's job type"
    assert recorded["current_retry_count"] == 0


def test_test_handler_runs_async_handlers(
    cli, write_config: WriteConfig, handler_types: str, tmp_path: Path
) -> None:
    out = tmp_path / "context.json"
    path = write_config(recorder(handler_types, out, kind="AsyncRecorder"))
    result = cli("test-handler", "recorder", "-c", str(path), "--result", "2")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["job_result"] == "Success"


def test_test_handler_uses_the_context_json_file(
    cli, write_config: WriteConfig, handler_types: str, tmp_path: Path
) -> None:
    out = tmp_path / "context.json"
    path = write_config(recorder(handler_types, out))
    context_file = tmp_path / "job.json"
    job_id = str(uuid.uuid4())
    context_file.write_text(
        json.dumps(
            {
                "JobId": job_id,
                "JobType": "WinCertInventory",
                "JobResult": "Success",
                "CurrentRetryCount": 5,
                "ClientMachine": "orch07.example.com",
                "operation_type": "CreateAdd",
                "Message": "all good",
            }
        )
    )
    result = cli("test-handler", "recorder", "-c", str(path), "--context-json", str(context_file))
    assert result.exit_code == 0, result.output
    recorded = json.loads(out.read_text())
    assert recorded["job_id"] == job_id
    assert recorded["job_type"] == "WinCertInventory"
    assert recorded["job_result"] == "Success", "the file's result, as --result was not given"
    assert recorded["current_retry_count"] == 5
    assert recorded["client_machine"] == "orch07.example.com"
    assert recorded["operation_type"] == "CreateAdd"
    assert recorded["message"] == "all good"


def test_command_line_options_override_the_context_json_file(
    cli, write_config: WriteConfig, handler_types: str, tmp_path: Path
) -> None:
    out = tmp_path / "context.json"
    path = write_config(recorder(handler_types, out))
    context_file = tmp_path / "job.json"
    context_file.write_text(json.dumps({"job_result": "Success", "current_retry_count": 5}))
    job_type_id = str(uuid.uuid4())
    result = cli(
        "test-handler",
        "recorder",
        "-c",
        str(path),
        "--context-json",
        str(context_file),
        "--result",
        "failure",
        "--retry-count",
        "1",
        "--job-type-id",
        job_type_id,
    )
    assert result.exit_code == 0, result.output
    recorded = json.loads(out.read_text())
    assert (recorded["job_result"], recorded["current_retry_count"]) == ("Failure", 1)
    assert recorded["job_type_id"] == job_type_id


def test_an_invalid_context_json_file_is_reported(
    cli, write_config: WriteConfig, tmp_path: Path
) -> None:
    path = write_config(LOG)
    bad = tmp_path / "job.json"
    bad.write_text(json.dumps({"job_result": "Exploded", "JobId": "nope"}))
    result = cli("test-handler", "audit", "-c", str(path), "--context-json", str(bad))
    assert result.exit_code == 1
    assert "Failure (4)" in result.stderr and "job_id" in result.stderr
    bad.write_text("[1, 2]")
    result = cli("test-handler", "audit", "-c", str(path), "--context-json", str(bad))
    assert result.exit_code == 1
    assert "expected a JSON object" in result.stderr
    result = cli("test-handler", "audit", "-c", str(path), "--context-json", str(tmp_path / "no"))
    assert result.exit_code == 1
    assert "cannot read" in result.stderr


def test_a_handler_that_raises_is_reported_as_failed(
    cli, write_config: WriteConfig, handler_types: str
) -> None:
    text = LOG.replace('"log"', f'"{handler_types}:Raises"')
    result = cli("test-handler", "audit", "-c", str(write_config(text)))
    assert result.exit_code == 1
    assert "✗ failed" in result.stdout
    assert "RuntimeError: mailbox unavailable: quota exceeded" in result.stdout
    assert "Traceback" not in result.stdout
    with_traceback = cli("test-handler", "audit", "-c", str(write_config(text)), "--traceback")
    assert "Traceback" in with_traceback.stdout


def test_a_handler_that_returns_false_is_reported_as_failed(
    cli, write_config: WriteConfig, handler_types: str
) -> None:
    text = LOG.replace('"log"', f'"{handler_types}:ReturnsFalse"')
    result = cli("test-handler", "audit", "-c", str(write_config(text)))
    assert result.exit_code == 1
    assert "failed" in result.stdout
    assert "returned False" in result.stdout
    assert "succeeded" not in result.stdout


def test_unknown_handler_name_is_a_clear_error(cli, write_config: WriteConfig) -> None:
    result = cli("test-handler", "audti", "-c", str(write_config(LOG)))
    assert result.exit_code == 1
    assert "no valid handler named 'audti'" in result.stderr
    assert "valid handlers: audit" in result.stderr


def test_an_invalid_handler_cannot_be_tested_and_says_why(cli, write_config: WriteConfig) -> None:
    text = LOG + LOG.replace('"audit"', '"broken"').replace('"*"', "[]")
    result = cli("test-handler", "broken", "-c", str(write_config(text)))
    assert result.exit_code == 1
    assert "handlers[1] 'broken': job_types is empty" in result.stderr
    assert "no valid handler named 'broken'" in result.stderr


def test_a_bad_result_is_refused(cli, write_config: WriteConfig) -> None:
    result = cli("test-handler", "audit", "-c", str(write_config(LOG)), "--result", "exploded")
    assert result.exit_code == 1
    assert "--result" in result.stderr and "Failure (4)" in result.stderr


# a handler type from a separately installed package

ACME_MODULE = '''
"""Acme's handlers for jobhooks."""

from jobhooks import JobCompleteContext, JobCompleteHandler


class AcmeRecorder(JobCompleteHandler):
    """Append one line per completion to a file."""

    output_path: str
    greeting: str = "hello"
    repeat: int = 1

    def run_handler(self, context: JobCompleteContext) -> bool:
        line = f"{self.greeting} {context.job_type} {context.job_result.display} "
        line += f"{context.current_retry_count}\\n"
        with open(self.output_path, "a", encoding="utf-8") as out:
            out.write(line * self.repeat)
        return True
'''

ACME_PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "acme-handlers"
version = "1.0.0"

[project.entry-points."jobhooks.handlers"]
acme-recorder = "acme_handlers:AcmeRecorder"

[tool.setuptools]
py-modules = ["acme_handlers"]
"""


@pytest.fixture(scope="module")
def acme_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """acme-handlers, pip-installed into a directory of its own."""
    package = tmp_path_factory.mktemp("acme-handlers")
    (package / "pyproject.toml").write_text(textwrap.dedent(ACME_PYPROJECT), encoding="utf-8")
    (package / "acme_handlers.py").write_text(ACME_MODULE, encoding="utf-8")
    target = tmp_path_factory.mktemp("site")
    command = [
        sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
        "--no-index", "--disable-pip-version-check", "--quiet",
        "--target", str(target), str(package),
    ]  # fmt: skip
    installed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return target


def run_jobhooks(
    site: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBHOOKS_")}
    env.update(PYTHONPATH=str(site), COLUMNS="400", PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "jobhooks.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def test_test_handler_runs_a_handler_from_an_installed_package(
    acme_site: Path, write_config: WriteConfig, tmp_path: Path
) -> None:
    out = tmp_path / "acme.log"
    path = write_config(
        f"""
        [[handlers]]
        name = "acme"
        type = "acme-recorder"
        job_types = ["{INVENTORY}"]
        [handlers.properties]
        OutputPath = "{out}"
        Repeat = "2"
        """
    )
    result = run_jobhooks(
        acme_site, "test-handler", "acme", "--config", str(path), "--retry-count", "3"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout
    assert out.read_text(encoding="utf-8") == "hello Inventory Failure 3\n" * 2


def test_handlers_lists_the_installed_package_type_with_its_properties(
    acme_site: Path, tmp_path: Path
) -> None:
    result = run_jobhooks(acme_site, "handlers", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if "acme" in line.lower()]
    assert any("acme-recorder" in row and "acme_handlers:AcmeRecorder" in row for row in rows)
    table = result.stdout
    for expected in ("OutputPath", "Greeting", "'hello'", "Repeat", "an integer", "required"):
        assert expected in table
    output_row = next(line for line in table.splitlines() if "OutputPath" in line)
    assert "a string" in output_row and "required" in output_row


def test_an_unknown_type_lists_the_installed_package(
    acme_site: Path, write_config: WriteConfig
) -> None:
    path = write_config(LOG.replace('"log"', '"acme-recordr"'))
    result = run_jobhooks(acme_site, "validate", "--config", str(path))
    assert result.returncode == 1
    assert "did you mean 'acme-recorder'?" in result.stderr


# notification rules

PAGE = """
[[handlers]]
name = "page"
type = "log"
job_types = "*"
when = ["failure-streak", "still-failing", "recovered"]
streak = 3
repeat_every = "6h"
"""


def test_validate_shows_each_registrations_rules(cli, write_config: WriteConfig) -> None:
    result = cli("validate", "-c", str(write_config(PAGE + LOG)))
    assert result.exit_code == 0, result.output
    assert "failure-streak (at 3), still-failing (every 6h), recovered" in result.stdout
    assert "always" in result.stdout


def test_validate_names_every_rule_problem_with_its_line(cli, write_config: WriteConfig) -> None:
    text = (
        PAGE.replace('"recovered"', '"recoverd"')
        + PAGE.replace('name = "page"', 'name = "nag"').replace('repeat_every = "6h"\n', "")
        + PAGE.replace('name = "page"', 'name = "zero"').replace("streak = 3", "streak = 0")
        + PAGE.replace('name = "page"', 'name = "soon"').replace('"6h"', '"6 hours"')
    )
    path = write_config(text)
    result = cli("validate", "-c", str(path))
    assert result.exit_code == 1, result.output
    err = result.stderr
    assert "4 problems" in err
    assert "unknown trigger 'recoverd'; did you mean 'recovered'?" in err
    assert 'still-failing" needs repeat_every' in err
    assert "streak" in err and "greater than or equal to 1" in err
    assert "expected a duration" in err and "'6 hours'" in err
    assert f"({path} line " in err


@pytest.mark.parametrize(
    ("args", "fires", "said"),
    [
        (["--result", "failure", "--streak", "2"], False, "2nd consecutive failure, fires at 3"),
        (["--result", "failure", "--streak", "3"], True, "failure-streak: 3rd consecutive failure"),
        (["--result", "failure", "--streak", "9"], True, "still-failing: still failing: 9th"),
        (["--result", "success", "--streak", "4"], True, "recovered: "),
        (["--result", "success", "--streak", "0"], False, "Success, says recovered only when"),
    ],
)
def test_test_handler_evaluates_the_rules_for_a_streak_and_says_why(
    cli,
    write_config: WriteConfig,
    handler_types: str,
    tmp_path: Path,
    args: list[str],
    fires: bool,
    said: str,
) -> None:
    out = tmp_path / "context.json"
    rules = 'when = ["failure-streak", "still-failing", "recovered"]\nrepeat_every = "6h"\n'
    text = recorder(handler_types, out).replace(
        "[handlers.properties]", rules + "[handlers.properties]"
    )
    result = cli("test-handler", "recorder", "-c", str(write_config(text)), *args)
    assert result.exit_code == 0, result.output
    assert said in " ".join(result.stdout.split()), result.stdout
    assert out.exists() == fires, "the handler runs only when the rules fire"
    if fires:
        trigger = json.loads(out.read_text())["trigger"]
        assert trigger["kind"] == said.split(":")[0] and trigger["reason"]


def test_test_handler_refuses_a_streak_no_rule_counts_to(
    cli, write_config: WriteConfig, handler_types: str, tmp_path: Path
) -> None:
    """A streak past any a rule counts to was played through failure by failure (100,000,000
    took twelve minutes with still-failing, nothing said); a failure's streak of 0 was
    rehearsed as its "0th" failure."""
    out = tmp_path / "context.json"
    text = recorder(handler_types, out).replace(
        "[handlers.properties]", 'when = ["failure-streak"]\n[handlers.properties]'
    )
    config = str(write_config(text))

    huge = run_cli("test-handler", "recorder", "-c", config, "--streak", "100000000", timeout=20)
    assert huge.returncode == 2, huge.stdout
    assert "--streak" in huge.stderr and "1000000" in huge.stderr, huge.stderr
    zero = cli("test-handler", "recorder", "-c", config, "--result", "failure", "--streak", "0")
    assert zero.exit_code == 1
    assert "--streak: a failure is the 1st consecutive failure" in zero.output
    assert not out.exists(), "the handler did not run"


def test_test_handler_runs_a_process_isolated_handler_as_a_worker_would(
    write_config: WriteConfig,
) -> None:
    # The handler kills its process: isolated, that is the child's, and a failed attempt.
    path = write_config(
        '[[handlers]]\nname = "exits"\ntype = "support.handlers:Exits"\njob_types = "*"\n'
        'isolation = "process"\ntimeout = 20\n'
    )
    result = run_cli("test-handler", "exits", "-c", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "✗ failed" in result.stdout
    assert "the handler's process exited with code 3 before reporting" in result.stdout


def test_validate_shows_every_problem_of_the_imported_built_in_in_one_pass(
    cli, write_config: WriteConfig
) -> None:
    # Keyfactor Command's built-in email handler as import-webconfig writes it, untouched.
    text = textwrap.dedent(
        """\
        [smtp]
        host = ""
        mail_from = ""

        [[handlers]]
        name = "SendEmailOrchestratorJobCompleteHandler"
        type = "send-email"
        job_types = []
        [handlers.properties]
        EmailRecipients = ""
        """
    )
    path = write_config(text)
    result = cli("validate", "-c", str(path))
    assert result.exit_code == 1
    label = "handlers[0] 'SendEmailOrchestratorJobCompleteHandler'"
    problems = [line[4:] for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert [(p.split(":")[0], p.rsplit(" line ", 1)[-1]) for p in problems] == [
        (label, "8)"),
        ("[smtp] host", "2)"),
        ("[smtp] mail_from", "3)"),
        (label, "10)"),
    ]
    assert "job_types is empty" in problems[0]
    assert problems[1].startswith("[smtp] host: is empty")
    assert problems[2].startswith("[smtp] mail_from: is empty")
    assert "property EmailRecipients: list at least one address" in problems[3]


# import-webconfig --output

REGISTER = """<register type="IOrchestratorJobCompleteHandler" mapTo="Keyfactor.Extensions.Handlers.Log, X" name="Audit">
  <property name="JobTypes" value="*" />
</register>
"""  # noqa: E501


@pytest.fixture
def handlers_xml(tmp_path: Path) -> Path:
    source = tmp_path / "handlers.xml"
    source.write_text(REGISTER, encoding="utf-8")
    return source


def test_import_never_replaces_a_file_unless_asked(cli, handlers_xml: Path) -> None:
    existing = handlers_xml.with_name("jobhooks.toml")
    existing.write_text("# my configuration\n", encoding="utf-8")

    refused = cli("import-webconfig", str(handlers_xml), "-o", str(existing))
    replaced = cli("import-webconfig", str(handlers_xml), "-o", str(existing), "--force")

    assert refused.exit_code == 1
    assert "exists; give --force to replace it" in refused.stderr
    assert replaced.exit_code == 0, replaced.output
    assert "[[handlers]]" in existing.read_text(encoding="utf-8")


def test_import_never_writes_over_the_file_it_reads(cli, handlers_xml: Path) -> None:
    result = cli("import-webconfig", str(handlers_xml), "-o", str(handlers_xml), "--force")

    assert result.exit_code == 1
    assert "is the file being read" in result.stderr
    assert handlers_xml.read_text(encoding="utf-8") == REGISTER


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("folder", "is a folder"),
        ("missing/jobhooks.toml", "cannot write"),
        ("/dev/full", "No space left on device"),
    ],
)
def test_an_output_that_cannot_be_written_is_said_and_nothing_is_left_half_written(
    cli, handlers_xml: Path, target: str, said: str
) -> None:
    (handlers_xml.parent / "folder").mkdir()
    output = handlers_xml.parent / target

    result = cli("import-webconfig", str(handlers_xml), "-o", str(output), "--force")

    assert result.exit_code == 1
    assert said in result.stderr and "Traceback" not in result.output, result.output
    assert sorted(p.name for p in handlers_xml.parent.iterdir()) == ["folder", "handlers.xml"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_import_reads_a_file_saved_by_windows_tools(cli, tmp_path: Path, encoding: str) -> None:
    source = tmp_path / "handlers.xml"
    declared = '<?xml version="1.0" encoding="utf-16"?>\n' if encoding == "utf-16" else ""
    source.write_bytes((declared + REGISTER.replace("Audit", "Audit-é")).encode(encoding))

    result = cli("import-webconfig", str(source))

    assert result.exit_code == 0, result.output
    assert 'name = "Audit-é"' in result.stdout


def test_import_says_which_byte_is_not_in_the_declared_encoding(cli, tmp_path: Path) -> None:
    source = tmp_path / "handlers.xml"
    source.write_bytes(REGISTER.replace("Audit", "Audit-\xe9").encode("latin-1"))

    result = cli("import-webconfig", str(source))

    assert result.exit_code == 1
    assert "line 1" in result.stderr and "0xE9" in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_validate_lists_every_problem_of_a_table_the_schema_refused(
    cli, write_config: WriteConfig
) -> None:
    """A table with a wrong key still has its job types and its name checked in the same
    pass (a second run used to find them only after the first problem was fixed)."""
    path = write_config(
        """
[[handlers]]
name = "audit"
type = "log"
when = 5
job_types = ""

[[handlers]]
name = "audit"
type = ""
job_types = "Inventry"
"""
    )

    result = cli("validate", "--config", str(path))

    assert result.exit_code == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 5, result.stderr
    said = "\n".join(problems)
    assert "handlers[0] 'audit': when: expected a string" in said
    assert "handlers[0] 'audit': job_types is empty" in said
    assert "handlers[1] 'audit': type: must not be empty" in said
    assert "handlers[1] 'audit': name: duplicate handler name" in said
    assert "handlers[1] 'audit': job_types: unknown job type name 'Inventry'" in said


def test_import_writes_nothing_through_a_link_planted_beside_the_output(
    cli, handlers_xml: Path
) -> None:
    """The file written first and then moved into place is made new: a link at any name
    it might take leads nowhere."""
    victim = handlers_xml.with_name("victim.txt")
    victim.write_text("keep me\n", encoding="utf-8")
    for name in (".out.toml.partial", ".out.toml.tmp"):
        handlers_xml.with_name(name).symlink_to(victim)

    result = cli("import-webconfig", str(handlers_xml), "-o", str(handlers_xml.parent / "out.toml"))

    assert result.exit_code == 0, result.output
    assert victim.read_text(encoding="utf-8") == "keep me\n"
    written = handlers_xml.with_name("out.toml")
    assert not written.is_symlink() and "[[handlers]]" in written.read_text(encoding="utf-8")
    assert oct(written.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_error_is_one_line_whatever_it_quotes(cli, tmp_path: Path) -> None:
    """A file name (or a platform's answer) with a line break cannot forge a second line."""
    result = cli("import-webconfig", str(tmp_path / "a\nerror: all is well"))

    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot read"), lines
    assert "a\\nerror: all is well" in lines[0]
