"""``jobhooks import-webconfig``: the platform's registrations in, a valid configuration out."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomlkit

WriteConfig = Callable[..., Path]

SAMPLE_PASSWORD = "somepassword-Wq7"
SAMPLE_VARIABLE = "JOBHOOKS_SENDEMAIL_REPEATEDFAILUREHANDLER_PASSWORD"
INVENTORY = "7B6BBC1B-D802-4B09-BEC9-F5C221083130"
MANAGEMENT = "44340A94-9B99-410D-8011-598FB176C3C5"

BUILT_IN = """\
<register type="IOrchestratorJobCompleteHandler" mapTo="CSS.CMS.Agents.Server.Handlers.SendEmailOrchestratorJobCompleteHandler, CSS.CMS.Agents.Server" name="SendEmailOrchestratorJobCompleteHandler">
<property name="EmailRecipients" value="" />
<property name="JobTypes" value="" />
</register>"""  # noqa: E501

SAMPLE = f"""\
<register type="IOrchestratorJobCompleteHandler" mapTo="SampleJobCompletionHandlers.SendEmail_RepeatedFailureHandler, SampleJobCompletionHandlers" name="SendEmail_RepeatedFailureHandler">
    <property name="SmtpServer" value="my.smtp.email" />
    <property name="SmtpPort" value="587" />
    <property name="Username" value="myuser@domain.local" />
    <property name="Password" value="{SAMPLE_PASSWORD}" />
    <property name="MailFrom" value="my.name@smtp.email" />
    <property name="EmailRecipients" value="the.recipient@smtp.email,second@smtp.email" />
    <property name="RetryThreshold" value="2" />
    <property name="JobTypes" value="{INVENTORY},{MANAGEMENT}" />
</register>"""  # noqa: E501


def web_config(*registrations: str, commented: str | None = None) -> str:
    """A WebAgentServices web.config shaped like the platform's, around ``registrations``."""
    hidden = (
        "<!--The following are Orchestrator Job Complete Handler registrations. "
        f"Uncomment to use.-->\n<!--{commented}-->\n"
        if commented
        else ""
    )
    body = "\n".join(registrations)
    return f"""<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <configSections>
    <section name="unity" type="Microsoft.Practices.Unity.Configuration.UnityConfigurationSection, Unity.Configuration" />
  </configSections>
  <!-- application settings -->
  <unity xmlns="http://schemas.microsoft.com/practices/2010/unity">
    <alias alias="IOrchestratorJobCompleteHandler" type="Keyfactor.Platform.Extensions.IOrchestratorJobCompleteHandler, Keyfactor.Platform.IOrchestratorJobCompleteHandler" />
    <container>
      <register type="IAgentRegistrationHandler" mapTo="CSS.CMS.Agents.Server.Something, CSS.CMS.Agents.Server" name="Other" />
      {hidden}{body}
    </container>
  </unity>
</configuration>
"""  # noqa: E501


@pytest.fixture
def run_import(cli: Any, tmp_path: Path) -> Callable[..., Any]:
    """Write ``text`` to a file named ``name`` and import it; returns the CLI result."""

    def run(text: str, *options: str, name: str = "web.config") -> Any:
        source = tmp_path / name
        source.write_text(text, encoding="utf-8")
        return cli("import-webconfig", str(source), *options)

    return run


def fill_flagged(toml_text: str, job_types: list[str] | None = None) -> str:
    """What an operator does with the FLAG comments: fill what is empty."""
    document = tomlkit.parse(toml_text)
    smtp = document.get("smtp")
    if smtp is not None:
        smtp["host"] = "smtp.internal.example.com"
        smtp["mail_from"] = "jobhooks@example.com"
    for table in document["handlers"]:
        if not table["job_types"]:
            table["job_types"] = job_types or [INVENTORY]
        properties = table.get("properties", {})
        for key in list(properties):
            if key == "EmailRecipients" and not properties[key]:
                properties[key] = "pki-team@example.com"
    return tomlkit.dumps(document)


def validate(cli: Any, write_config: WriteConfig, text: str) -> Any:
    return cli("validate", "-c", str(write_config(text, "imported.toml")))


def test_the_repeated_failure_sample_becomes_a_valid_registration(
    cli: Any, run_import: Callable[..., Any], write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    result = run_import(web_config(SAMPLE))
    assert result.exit_code == 0, result.output
    assert SAMPLE_PASSWORD not in result.output
    assert f"set {SAMPLE_VARIABLE} (it holds Password of SendEmail_RepeatedFailureHandler)" in (
        result.stderr
    )
    document = tomlkit.parse(result.stdout)
    assert "smtp" not in document, "the sample brings its own SMTP server"
    (handler,) = document["handlers"]
    assert handler["name"] == "SendEmail_RepeatedFailureHandler"
    assert handler["type"] == "repeated-failure-email"
    assert handler["job_types"] == [INVENTORY, MANAGEMENT]
    assert "enabled" not in handler
    assert handler["properties"] == {
        "SmtpServer": "my.smtp.email",
        "SmtpPort": "587",
        "Username": "myuser@domain.local",
        "Password": f"env:{SAMPLE_VARIABLE}",
        "MailFrom": "my.name@smtp.email",
        "EmailRecipients": "the.recipient@smtp.email,second@smtp.email",
        "RetryThreshold": "2",
    }
    unset = validate(cli, write_config, result.stdout)
    assert unset.exit_code == 1
    assert f"environment variable {SAMPLE_VARIABLE} is not set" in unset.stderr
    monkeypatch.setenv(SAMPLE_VARIABLE, SAMPLE_PASSWORD)
    valid = validate(cli, write_config, result.stdout)
    assert valid.exit_code == 0, valid.output
    assert "1 handler registered" in valid.stdout
    assert SAMPLE_PASSWORD not in valid.output


def test_the_commented_built_in_is_read_only_when_asked(
    cli: Any, run_import: Callable[..., Any], write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    text = web_config(SAMPLE, commented=BUILT_IN)
    without = tomlkit.parse(run_import(text).stdout)
    assert [h["name"] for h in without["handlers"]] == ["SendEmail_RepeatedFailureHandler"]

    result = run_import(text, "--include-commented")
    assert result.exit_code == 0, result.output
    document = tomlkit.parse(result.stdout)
    names = [handler["name"] for handler in document["handlers"]]
    assert names == ["SendEmail_RepeatedFailureHandler", "SendEmailOrchestratorJobCompleteHandler"]
    built_in = document["handlers"][1]
    assert built_in["type"] == "send-email"
    assert built_in["enabled"] is False
    assert "commented out" in result.stdout
    assert "FLAG SendEmailOrchestratorJobCompleteHandler: JobTypes is empty" in result.stderr
    assert "FLAG SendEmailOrchestratorJobCompleteHandler: EmailRecipients is empty" in (
        result.stderr
    )
    assert "FLAG: the platform's built-in email handler used the platform's SMTP" in result.stdout
    assert SAMPLE_PASSWORD not in result.output

    assert validate(cli, write_config, result.stdout).exit_code == 1, "flagged parts are empty"
    monkeypatch.setenv(SAMPLE_VARIABLE, SAMPLE_PASSWORD)
    valid = validate(cli, write_config, fill_flagged(result.stdout))
    assert valid.exit_code == 0, valid.output
    assert "1 handler registered" in valid.stdout, "the disabled one is checked, not registered"


def test_the_built_in_uncommented_needs_smtp_settings(
    cli: Any, run_import: Callable[..., Any], write_config: WriteConfig
) -> None:
    result = run_import(web_config(BUILT_IN))
    assert result.exit_code == 0, result.output
    document = tomlkit.parse(result.stdout)
    assert document["smtp"] == {"host": "", "mail_from": ""}
    (handler,) = document["handlers"]
    assert (handler["type"], handler.get("enabled", True)) == ("send-email", True)
    invalid = validate(cli, write_config, result.stdout)
    assert invalid.exit_code == 1
    assert "job_types is empty" in invalid.stderr
    filled = fill_flagged(result.stdout, [INVENTORY, MANAGEMENT])
    valid = validate(cli, write_config, filled)
    assert valid.exit_code == 0, valid.output
    assert "SendEmailOrchestratorJobCompleteHandler" in valid.stdout


def test_empty_values_mean_not_set(
    cli: Any, run_import: Callable[..., Any], write_config: WriteConfig
) -> None:
    no_login = SAMPLE.replace("myuser@domain.local", "").replace(SAMPLE_PASSWORD, "")
    result = run_import(web_config(no_login))
    assert result.exit_code == 0, result.output
    assert "FLAG" not in result.stderr and "set JOBHOOKS_" not in result.stderr
    (handler,) = tomlkit.parse(result.stdout)["handlers"]
    assert "Username" not in handler["properties"] and "Password" not in handler["properties"]
    valid = validate(cli, write_config, result.stdout)
    assert valid.exit_code == 0, valid.output


def test_an_unknown_type_is_flagged_and_kept_for_the_operator(
    cli: Any, run_import: Callable[..., Any], write_config: WriteConfig
) -> None:
    custom = (
        '<register type="IOrchestratorJobCompleteHandler" '
        'mapTo="Acme.Handlers.TicketHandler, Acme.Handlers" name="OpenTicket">'
        f'<property name="QueueName" value="PKI" /><property name="ApiKey" value="acme-key-77Q" />'
        f'<property name="JobTypes" value="{INVENTORY}" /></register>'
    )
    result = run_import(web_config(custom))
    assert result.exit_code == 0, result.output
    assert "FLAG OpenTicket: no jobhooks type for the C# handler 'Acme.Handlers.TicketHandler'" in (
        result.stderr
    )
    assert "acme-key-77Q" not in result.output, "ApiKey looks secret: it becomes an env: reference"
    (handler,) = tomlkit.parse(result.stdout)["handlers"]
    assert handler["type"] == ""
    assert handler["properties"] == {
        "QueueName": "PKI",
        "ApiKey": "env:JOBHOOKS_OPENTICKET_APIKEY",
    }
    invalid = validate(cli, write_config, result.stdout)
    assert invalid.exit_code == 1
    assert "'OpenTicket'" in invalid.stderr and "type" in invalid.stderr


def test_unknown_properties_of_a_known_type_are_flagged_and_left_out(
    run_import: Callable[..., Any],
) -> None:
    extra = SAMPLE.replace("</register>", '<property name="Importance" value="High" /></register>')
    result = run_import(web_config(extra))
    assert result.exit_code == 0, result.output
    assert "FLAG SendEmail_RepeatedFailureHandler: Importance is not a property" in result.stderr
    (handler,) = tomlkit.parse(result.stdout)["handlers"]
    assert "Importance" not in handler["properties"]


def manifest(options: dict[str, Any], type_name: str) -> str:
    return json.dumps(
        {
            "extensions": {
                "Keyfactor.Platform.Extensions.IOrchestratorJobCompleteHandler": {
                    "SendEmail_RepeatedFailureHandler": {
                        "assemblypath": "x.dll",
                        "TypeFullName": type_name,
                        "Options": options,
                    }
                }
            }
        }
    )


def test_a_manifest_imports_like_a_web_config(
    cli: Any, run_import: Callable[..., Any], write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    options = {
        "SmtpServer": "my.smtp.email",
        "SmtpPort": 587,
        "Username": "myuser@domain.local",
        "Password": SAMPLE_PASSWORD,
        "MailFrom": "my.name@smtp.email",
        "EmailRecipients": "the.recipient@smtp.email",
        "RetryThreshold": 2,
        "JobTypes": f"{INVENTORY}, {MANAGEMENT}",
    }
    text = manifest(options, "SampleJobCompletionHandlers.SendEmail_RepeatedFailureHandler")
    result = run_import(text, name="manifest.json")
    assert result.exit_code == 0, result.output
    assert SAMPLE_PASSWORD not in result.output
    (handler,) = tomlkit.parse(result.stdout)["handlers"]
    assert (handler["name"], handler["type"]) == (
        "SendEmail_RepeatedFailureHandler",
        "repeated-failure-email",
    )
    assert handler["job_types"] == [INVENTORY, MANAGEMENT]
    assert handler["properties"]["Password"] == f"env:{SAMPLE_VARIABLE}"
    monkeypatch.setenv(SAMPLE_VARIABLE, SAMPLE_PASSWORD)
    valid = validate(cli, write_config, result.stdout)
    assert valid.exit_code == 0, valid.output


def test_an_unknown_type_in_a_manifest_is_flagged(run_import: Callable[..., Any]) -> None:
    text = manifest({"JobTypes": INVENTORY}, "Acme.Handlers.TicketHandler")
    result = run_import(text, name="manifest.json")
    assert result.exit_code == 0, result.output
    assert "no jobhooks type for the C# handler 'Acme.Handlers.TicketHandler'" in result.stderr


def test_an_output_file_is_written_instead_of_stdout(
    run_import: Callable[..., Any], tmp_path: Path
) -> None:
    out = tmp_path / "jobhooks.toml"
    result = run_import(web_config(SAMPLE), "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"Wrote 1 registration(s) to {out}" in result.stderr
    assert SAMPLE_PASSWORD not in out.read_text()
    assert tomlkit.parse(out.read_text())["handlers"][0]["type"] == "repeated-failure-email"


def test_a_bare_fragment_as_documented_is_imported(
    cli: Any, run_import: Callable[..., Any], write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    result = run_import(f"{SAMPLE}\n{BUILT_IN}\n", name="handlers.xml")
    assert result.exit_code == 0, result.output
    document = tomlkit.parse(result.stdout)
    assert [(h["name"], h["type"]) for h in document["handlers"]] == [
        ("SendEmail_RepeatedFailureHandler", "repeated-failure-email"),
        ("SendEmailOrchestratorJobCompleteHandler", "send-email"),
    ]
    assert document["handlers"][0]["job_types"] == [INVENTORY, MANAGEMENT]
    monkeypatch.setenv(SAMPLE_VARIABLE, SAMPLE_PASSWORD)
    valid = validate(cli, write_config, fill_flagged(result.stdout))
    assert valid.exit_code == 0, valid.output


def test_a_commented_fragment_as_documented_is_imported_when_asked(
    run_import: Callable[..., Any],
) -> None:
    text = f'<?xml version="1.0" encoding="utf-8"?>\n<!--{BUILT_IN}-->\n'
    result = run_import(text, "--include-commented", name="built-in.xml")
    assert result.exit_code == 0, result.output
    (handler,) = tomlkit.parse(result.stdout)["handlers"]
    assert (handler["name"], handler["type"], handler["enabled"]) == (
        "SendEmailOrchestratorJobCompleteHandler",
        "send-email",
        False,
    )
    without = run_import(text, name="built-in.xml")
    assert without.exit_code == 0, without.output
    assert (
        "note: 1 registration(s) inside XML comments were not read; --include-commented "
        "imports them too (as enabled = false)"
    ) in without.stderr


def test_a_fragment_that_is_not_xml_names_the_line(
    run_import: Callable[..., Any], tmp_path: Path
) -> None:
    broken = BUILT_IN.replace('<property name="JobTypes" value="" />', '<property name="JobTypes">')
    result = run_import(f"{SAMPLE}\n{broken}\n", name="handlers.xml")
    assert result.exit_code == 1
    assert f"error: {tmp_path / 'handlers.xml'}: not well-formed XML: mismatched tag: line 14" in (
        result.stderr
    )


def test_a_file_without_registrations_says_so(run_import: Callable[..., Any]) -> None:
    result = run_import(web_config())
    assert result.exit_code == 0
    assert 'note: no <register type="IOrchestratorJobCompleteHandler"> block was found' in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("web.config", "<configuration><unity></configuration>", "not well-formed XML: mismatched"),
        ("web.config", "", "not well-formed XML: no element found"),
        ("manifest.json", '{"extensions": {', "not valid JSON: Expecting"),
    ],
)  # fmt: skip
def test_malformed_input_is_an_error(
    run_import: Callable[..., Any], tmp_path: Path, name: str, text: str, problem: str
) -> None:
    result = run_import(text, name=name)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"error: {tmp_path / name}: {problem}" in result.stderr


def test_a_missing_file_is_an_error(cli: Any, tmp_path: Path) -> None:
    result = cli("import-webconfig", str(tmp_path / "web.config"))
    assert result.exit_code == 1
    assert "cannot read" in result.stderr and "No such file or directory" in result.stderr
