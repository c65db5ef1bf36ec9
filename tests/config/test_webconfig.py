"""``jobhooks import-webconfig``: the platform's registrations in, a valid configuration out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
import tomlkit

from jobhooks.config.webconfig import read_manifest, read_webconfig, to_toml
from jobhooks.config.xml_text import decode_source

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


def test_a_registration_a_later_one_of_its_name_replaces_is_imported_disabled(
    cli: Any, run_import: Callable[..., Any], write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Unity keeps the last registration of a name: the platform mailed the second list.
    # Both were imported enabled, 'validate' refused the file for a duplicate name, and
    # serving it ran the first (the second was quarantined).
    edited = SAMPLE.replace("the.recipient@smtp.email,second@smtp.email", "new@smtp.email")
    result = run_import(web_config(SAMPLE, edited))
    assert result.exit_code == 0, result.output
    first, second = tomlkit.parse(result.stdout)["handlers"]
    assert first["enabled"] is False
    assert "enabled" not in second
    assert second["properties"]["EmailRecipients"] == "new@smtp.email"
    assert (
        "FLAG SendEmail_RepeatedFailureHandler: a later registration named "
        "'SendEmail_RepeatedFailureHandler' replaces this one (Unity keeps the last of a "
        "name, so the platform never ran it): enabled = false"
    ) in result.stderr
    monkeypatch.setenv(SAMPLE_VARIABLE, SAMPLE_PASSWORD)
    monkeypatch.setenv(f"{SAMPLE_VARIABLE}_2", SAMPLE_PASSWORD)
    valid = validate(cli, write_config, result.stdout)
    assert valid.exit_code == 0, valid.output
    assert "1 handler registered" in valid.stdout


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


def test_a_misspelt_built_in_class_is_flagged_with_the_type_it_is_near(
    run_import: Callable[..., Any],
) -> None:
    misspelt = SAMPLE.replace(
        ".SendEmail_RepeatedFailureHandler,", ".SendEmial_RepeatedFailureHandler,"
    )
    result = run_import(web_config(misspelt))
    assert result.exit_code == 0, result.output
    flag = (
        "FLAG SendEmail_RepeatedFailureHandler: no jobhooks type for the C# handler "
        "'SampleJobCompletionHandlers.SendEmial_RepeatedFailureHandler': did you mean "
        "SendEmail_RepeatedFailureHandler? Its jobhooks type is 'repeated-failure-email'"
    )
    assert flag in " ".join(result.stderr.split())
    (handler,) = tomlkit.parse(result.stdout)["handlers"]
    assert handler["type"] == "", "a near match is only a guess: the operator decides"


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


def test_only_xml_comments_are_read_as_commented_registrations(
    run_import: Callable[..., Any],
) -> None:
    # Text that looks like a comment inside a CDATA section was imported as a commented
    # registration, and looking for comments in the text took time growing with the
    # square of the file: this file of 210 kB took 20 s, one of 1 MB ten minutes.
    quoted = f"<notes><![CDATA[an example: <!--{SAMPLE}-->]]></notes>"
    unclosed = "<notes><![CDATA[" + "<!--<register" * 16_000 + "]]></notes>"
    text = (
        web_config(BUILT_IN.replace('value=""', f'value="{INVENTORY}"', 1))
        .replace("<configSections>", quoted + "<configSections>")
        .replace("</configuration>", unclosed + "</configuration>")
    )
    started = time.monotonic()
    result = run_import(text, "--include-commented")
    assert time.monotonic() - started < 5
    assert result.exit_code == 0, result.output
    names = [handler["name"] for handler in tomlkit.parse(result.stdout)["handlers"]]
    assert names == ["SendEmailOrchestratorJobCompleteHandler"]
    assert "note:" not in result.stderr


def test_a_commented_registration_that_is_not_xml_is_noted_with_its_line(
    run_import: Callable[..., Any],
) -> None:
    broken = SAMPLE.replace('<property name="SmtpPort" value="587" />', "<property>")
    result = run_import(web_config(BUILT_IN, commented=broken), "--include-commented")
    assert result.exit_code == 0, result.output
    assert (
        "note: line 21: the commented-out block that begins on line 12 is not well-formed "
        "XML (mismatched tag): it was skipped"
    ) in result.stderr


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


def import_bytes(data: bytes) -> Any:
    """What the CLI does with a file's bytes: decode them as XML does, then import."""
    return tomlkit.parse(to_toml(read_webconfig(decode_source(data))))


WITH_UMLAUT = SAMPLE.replace("my.name@smtp.email", "müller@smtp.email")


@pytest.mark.parametrize(
    ("declared", "codec"),
    [
        ("utf-16", "utf-16"),  # Notepad's "Unicode": a little-endian byte-order mark
        ("utf-16", "utf-16-be"),
        ("utf-8", "utf-8-sig"),
        ("utf-32", "utf-32"),
        ("iso-8859-1", "iso-8859-1"),
        ("windows-1252", "cp1252"),
        ("utf-16", "utf-16-le"),  # no byte-order mark: '<?' tells it apart, as XML does
    ],
)
def test_a_web_config_in_any_declared_encoding_is_read(declared: str, codec: str) -> None:
    text = web_config(WITH_UMLAUT).replace('encoding="utf-8"', f'encoding="{declared}"')
    data = text.encode(codec)
    if codec in ("utf-16-be",):
        data = b"\xfe\xff" + data
    (handler,) = import_bytes(data)["handlers"]
    assert handler["properties"]["MailFrom"] == "müller@smtp.email"
    assert handler["job_types"] == [INVENTORY, MANAGEMENT]


def test_a_declaration_that_contradicts_the_byte_order_mark_yields_to_it() -> None:
    data = web_config(WITH_UMLAUT).encode("utf-16")  # still declares encoding="utf-8"
    (handler,) = import_bytes(data)["handlers"]
    assert handler["properties"]["MailFrom"] == "müller@smtp.email"


def test_a_manifest_saved_as_utf16_is_read() -> None:
    text = manifest({"JobTypes": INVENTORY}, "Acme.Handlers.TicketHandler")
    (handler,) = read_manifest(decode_source(text.encode("utf-16"))).handlers
    assert handler.job_types == [INVENTORY]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            web_config(WITH_UMLAUT).encode("iso-8859-1"),
            "cannot decode the file as UTF-8 (its XML declaration names it): byte 0xFC at "
            "line 16, column 39 is not UTF-8; save the file as UTF-8, or name its encoding in "
            'the XML declaration (such as encoding="windows-1252")',
        ),
        (
            WITH_UMLAUT.encode("cp1252"),
            "cannot decode the file as UTF-8 (the default: it has no byte-order mark or XML "
            "declaration naming one): byte 0xFC at line 6",
        ),
        (
            b'<?xml version="1.0" encoding="klingon"?>\n<configuration/>',
            "line 1: the XML declaration names the encoding 'klingon', which is unknown; save "
            'the file as UTF-8 and declare encoding="utf-8"',
        ),
    ],
)
def test_bytes_that_cannot_be_decoded_are_an_error_naming_the_line(
    data: bytes, problem: str
) -> None:
    with pytest.raises(ValueError) as raised:
        decode_source(data)
    assert problem in str(raised.value)


@pytest.mark.parametrize("encoding", ["hex", "base64", "rot13", "zlib", "idna", "undefined"])
def test_a_declared_encoding_that_is_no_text_encoding_is_an_error_naming_it(
    run_import: Callable[..., Any], tmp_path: Path, encoding: str
) -> None:
    # These are codecs Python knows, of bytes to bytes or that refuse most text: the
    # import ended with a LookupError's traceback, or without the line or what to do.
    text = web_config(SAMPLE).replace('encoding="utf-8"', f'encoding="{encoding}"')
    result = run_import(text)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert (
        f"error: {tmp_path / 'web.config'}: line 1: the XML declaration names the encoding "
        f"{encoding!r}, which is not a text encoding; save the file as UTF-8 and declare "
        'encoding="utf-8"'
    ) in result.stderr


def custom_handler(*properties: tuple[str, str], name: str = "OpenTicket") -> str:
    given = "".join(
        f'<property name="{key}" value="{escape(value, {chr(34): "&quot;"})}" />'
        for key, value in properties
    )
    return (
        '<register type="IOrchestratorJobCompleteHandler" '
        f'mapTo="Acme.Handlers.TicketHandler, Acme.Handlers" name="{name}">{given}'
        f'<property name="JobTypes" value="{INVENTORY}" /></register>'
    )


@pytest.mark.parametrize(
    ("key", "value", "variable"),
    [
        (
            "ConnectionString",
            "Server=sql01;Database=kf;User Id=sa;Password=Hunter2;",
            "CONNECTIONSTRING",
        ),
        ("Pwd", "Hunter3", "PWD"),
        ("SmtpPass", "Hunter4", "SMTPPASS"),
        ("PrivateKey", "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBg", "PRIVATEKEY"),
        ("WebhookUrl", "https://hooks.slack.com/services/T000/B000/XXXXSECRET", "WEBHOOKURL"),
        ("Target", "https://hooks.slack.com/services/T000/B000/XXXXSECRET", "TARGET"),
        ("Target", "https://acme.webhook.office.com/webhookb2/0a1b-XXXXSECRET", "TARGET"),
        ("Target", "https://outlook.office.com/webhook/0a1b/IncomingWebhook/XXXX", "TARGET"),
        ("Target", "https://discord.com/api/webhooks/123/XXXXSECRET", "TARGET"),
        ("Target", "https://bot:XXXXSECRET@tickets.example.com/api", "TARGET"),
        ("Target", "https://x.example.com/run?sv=2022&sig=XXXXSECRET", "TARGET"),
        ("Target", "https://x.example.com/api/notify?code=XXXXSECRET", "TARGET"),
        ("Database", "Data Source=db;Pwd=XXXXSECRET", "DATABASE"),
        ("Storage", "AccountName=kf;AccountKey=XXXXSECRET;", "STORAGE"),
        ("Certificate", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF", "CERTIFICATE"),
        ("TicketEndpoint", "https://tickets.example.com/queue/pki-XXXXSECRET", "TICKETENDPOINT"),
        ("Passphrase", "correct horse", "PASSPHRASE"),
        ("AuthHeader", "Bearer XXXXSECRET", "AUTHHEADER"),
        ("ClientCredential", "XXXXSECRET", "CLIENTCREDENTIAL"),
        ("Authorization", "Bearer XXXXSECRET", "AUTHORIZATION"),
        ("Header", "Basic dXNlcjpYWFhYU0VDUkVU", "HEADER"),
        ("ConnectionInfo", "Server=db;User=sa;Passwd=XXXXSECRET", "CONNECTIONINFO"),
        ("ApiCode", "XXXXSECRET", "APICODE"),
        ("Pin", "9999", "PIN"),
        ("Target", "https://api.example.com/notify?k=XXXXSECRET", "TARGET"),
    ],
)
def test_a_secret_is_known_by_its_name_or_its_value(
    run_import: Callable[..., Any], key: str, value: str, variable: str
) -> None:
    result = run_import(web_config(custom_handler((key, value), ("QueueName", "PKI"))))
    assert result.exit_code == 0, result.output
    assert value not in result.output and "XXXXSECRET" not in result.output
    (handler,) = tomlkit.parse(result.stdout)["handlers"]
    assert handler["properties"] == {
        key: f"env:JOBHOOKS_OPENTICKET_{variable}",
        "QueueName": "PKI",
    }
    assert f"set JOBHOOKS_OPENTICKET_{variable} (it holds {key} of OpenTicket)" in result.stderr
    assert f"#   JOBHOOKS_OPENTICKET_{variable}  <- {key} of OpenTicket" in result.stdout


def test_what_is_not_a_secret_stays_in_the_file(run_import: Callable[..., Any]) -> None:
    plain = [
        ("QueueName", "PKI"),
        ("Server", "tickets.example.com"),
        ("KeyfactorHost", "kf.example.com"),
        ("Author", "PKI team"),
        ("Pinned", "yes"),
        ("BaseUrl", "https://tickets.example.com/"),
        ("Subject", "Job failed on {agent}"),
        ("Password", "env:ALREADY_SET"),
    ]
    result = run_import(web_config(custom_handler(*plain)))
    assert result.exit_code == 0, result.output
    (handler,) = tomlkit.parse(result.stdout)["handlers"]
    assert handler["properties"] == dict(plain)
    assert "set JOBHOOKS_" not in result.stderr


def test_a_known_type_s_dropped_property_asks_for_no_variable(
    run_import: Callable[..., Any],
) -> None:
    extra = SAMPLE.replace(
        "</register>", '<property name="ApiKey" value="XXXXSECRET" /></register>'
    )
    result = run_import(web_config(extra))
    assert result.exit_code == 0, result.output
    assert "XXXXSECRET" not in result.output
    assert "APIKEY" not in result.output, "ApiKey was left out: no variable to set for it"


def test_manifest_options_that_are_lists_or_objects_become_toml_values(
    run_import: Callable[..., Any],
) -> None:
    options = {
        "JobTypes": [INVENTORY, MANAGEMENT],
        "Queues": ["pki", "ops"],
        "StartTls": True,
        "Retries": 3,
        "Proxy": None,
        "Nested": {"Password": "XXXXSECRET-deep", "Host": "relay", "Ports": [25, 587]},
        "Tokens": ["XXXXSECRET-one", "XXXXSECRET-two"],
    }
    text = manifest(options, "Acme.Handlers.TicketHandler")
    result = run_import(text, name="manifest.json")
    assert result.exit_code == 0, result.output
    assert "XXXXSECRET" not in result.output
    assert "not a GUID" not in result.stderr
    (handler,) = tomlkit.parse(result.stdout)["handlers"]
    assert handler["job_types"] == [INVENTORY, MANAGEMENT]
    prefix = "env:JOBHOOKS_SENDEMAIL_REPEATEDFAILUREHANDLER"
    assert handler["properties"] == {
        "Queues": ["pki", "ops"],
        "StartTls": "true",
        "Retries": "3",
        "Proxy": "",
        "Nested": {
            "Password": f"{prefix}_NESTED_PASSWORD",
            "Host": "relay",
            "Ports": ["25", "587"],
        },
        "Tokens": [f"{prefix}_TOKENS_0", f"{prefix}_TOKENS_1"],
    }
    origin = "Nested.Password of SendEmail_RepeatedFailureHandler"
    assert f"set {prefix[4:]}_NESTED_PASSWORD (it holds {origin})" in result.stderr
    assert f"set {prefix[4:]}_TOKENS_1 (it holds Tokens[1] of " in result.stderr


def test_a_manifest_option_nested_too_deeply_is_flagged_and_left_out(
    run_import: Callable[..., Any],
) -> None:
    deep: Any = "XXXXSECRET"
    for _ in range(40):
        deep = {"Level": deep}
    text = manifest({"JobTypes": INVENTORY, "Deep": deep}, "Acme.Handlers.TicketHandler")
    result = run_import(text, name="manifest.json")
    assert result.exit_code == 0, result.output
    assert "XXXXSECRET" not in result.output
    assert "Deep nests objects or lists more than" in result.stderr
    (handler,) = tomlkit.parse(result.stdout)["handlers"]
    assert "Deep" not in handler.get("properties", {})


COLLIDING = """\
<register type="IOrchestratorJobCompleteHandler" mapTo="SampleJobCompletionHandlers.SendEmail_RepeatedFailureHandler, SampleJobCompletionHandlers" name="{name}">
  <property name="JobTypes" value="{job_type}" />
  <property name="SmtpServer" value="relay.example.com" />
  <property name="Password" value="{password}" />
  <property name="EmailRecipients" value="pki@example.com" />
</register>"""  # noqa: E501


def test_registrations_whose_names_fold_alike_get_a_variable_each(
    run_import: Callable[..., Any],
) -> None:
    text = web_config(
        COLLIDING.format(name="Mail.Alerts", job_type=INVENTORY, password="ForRelayA"),
        COLLIDING.format(name="mail-alerts", job_type=MANAGEMENT, password="ForRelayB"),
    )
    result = run_import(text)
    assert result.exit_code == 0, result.output
    first, second = tomlkit.parse(result.stdout)["handlers"]
    assert first["properties"]["Password"] == "env:JOBHOOKS_MAIL_ALERTS_PASSWORD"
    assert second["properties"]["Password"] == "env:JOBHOOKS_MAIL_ALERTS_PASSWORD_2"
    assert "set JOBHOOKS_MAIL_ALERTS_PASSWORD (it holds Password of Mail.Alerts)" in result.stderr
    assert "set JOBHOOKS_MAIL_ALERTS_PASSWORD_2 (it holds Password of mail-alerts)" in (
        result.stderr
    )
    assert "#   JOBHOOKS_MAIL_ALERTS_PASSWORD  <- Password of Mail.Alerts" in result.stdout
    assert "#   JOBHOOKS_MAIL_ALERTS_PASSWORD_2  <- Password of mail-alerts" in result.stdout


def test_properties_that_differ_only_by_case_are_flagged_each_kept(
    run_import: Callable[..., Any],
) -> None:
    block = COLLIDING.format(name="relay", job_type=INVENTORY, password="first").replace(
        "</register>", '<property name="PASSWORD" value="second" /></register>'
    )
    result = run_import(web_config(block))
    assert result.exit_code == 0, result.output
    assert "first" not in result.output and "second" not in result.output
    (handler,) = tomlkit.parse(result.stdout)["handlers"]
    assert handler["properties"]["Password"] == "env:JOBHOOKS_RELAY_PASSWORD"
    assert handler["properties"]["PASSWORD"] == "env:JOBHOOKS_RELAY_PASSWORD_2"
    assert "set JOBHOOKS_RELAY_PASSWORD (it holds Password of relay)" in result.stderr
    assert "set JOBHOOKS_RELAY_PASSWORD_2 (it holds PASSWORD of relay)" in result.stderr
    assert "FLAG relay: Password and PASSWORD are one property to jobhooks" in result.stderr


def test_a_property_given_twice_is_flagged(run_import: Callable[..., Any]) -> None:
    block = COLLIDING.format(name="relay", job_type=INVENTORY, password="first").replace(
        "</register>", '<property name="Password" value="second" /></register>'
    )
    result = run_import(web_config(block))
    assert result.exit_code == 0, result.output
    assert "FLAG relay: Password is given 2 times; the last value was kept" in result.stderr
    assert "second" not in result.output


def extension(entry: object) -> str:
    return json.dumps({"extensions": {"Keyfactor.IOrchestratorJobCompleteHandler": entry}})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '{"extensions": []}',
            'not an extension manifest: "extensions" is a list, expected an object',
        ),
        ("[1, 2]", 'not an extension manifest: the file holds a list, expected an object'),
        ("[" * 100_000, "cannot read the JSON: its arrays or objects nest too deeply"),
    ],
)  # fmt: skip
def test_a_manifest_of_the_wrong_shape_is_an_error(
    run_import: Callable[..., Any], tmp_path: Path, text: str, problem: str
) -> None:
    result = run_import(text, name="manifest.json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"error: {tmp_path / 'manifest.json'}: {problem}" in result.stderr


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"h": {"TypeFullName": "X", "Options": ["a"]}},
            "FLAG h: Options is a list, expected an object of property names and values",
        ),
        (
            {"h": {"TypeFullName": "X", "Options": "JobTypes=1"}},
            "FLAG h: Options is a string, expected an object of property names and values",
        ),
        (
            {"h": "X"},
            "note: extensions.Keyfactor.IOrchestratorJobCompleteHandler.h is a string, "
            "expected an object with TypeFullName and Options: it was skipped",
        ),
        (
            ["X"],
            "note: extensions.Keyfactor.IOrchestratorJobCompleteHandler is a list, expected "
            "an object of named extensions: it was skipped",
        ),
    ],
)
def test_a_manifest_entry_of_the_wrong_shape_is_noted(
    run_import: Callable[..., Any], entry: object, message: str
) -> None:
    result = run_import(extension(entry), name="manifest.json")
    assert result.exit_code == 0, result.output
    assert message in result.stderr
    tomlkit.parse(result.stdout)


def test_control_characters_never_reach_the_file_or_the_terminal(
    run_import: Callable[..., Any],
) -> None:
    entry = {"h\u001b[31mRED\u001b[0m\n[server]": {"TypeFullName": "X\u0007", "Options": {
        "JobTypes": INVENTORY, "Password": "XXXXSECRET", "Odd\u001bName": "v\u001b",
    }}}  # fmt: skip
    result = run_import(extension(entry), name="manifest.json")
    assert result.exit_code == 0, result.output
    assert "\u001b" not in result.output and "\u0007" not in result.output
    assert "XXXXSECRET" not in result.output
    document = tomlkit.parse(result.stdout)
    assert "server" not in document
    (handler,) = document["handlers"]
    assert handler["name"] == "h\\x1b[31mRED\\x1b[0m\\n[server]"
    assert "the name has control characters" in result.stderr
    assert handler["properties"]["Odd\u001bName"] == "v\u001b", "TOML escapes them in values"


ALIASED = f"""\
<container>
<alias alias="JobCompleteHandler" type="CSS.CMS.Agents.Server.Interfaces.IOrchestratorJobCompleteHandler, CSS.CMS.Agents.Server"/>
<alias alias="EmailHandler" type="CSS.CMS.Agents.Server.Handlers.SendEmailOrchestratorJobCompleteHandler, CSS.CMS.Agents.Server"/>
<register type="JobCompleteHandler" mapTo="EmailHandler" name="mail"><property name="JobTypes" value="{INVENTORY}"/><property name="EmailRecipients" value="a@example.com"/></register>
<register type="IOrchestratorJobCompleteHandler" mapTo="EmailHandler" name="mail2"><property name="JobTypes" value="{INVENTORY}"/><property name="EmailRecipients" value="a@example.com"/></register>
<register type="Unrelated" mapTo="EmailHandler" name="other"/>
</container>"""  # noqa: E501


def test_unity_aliases_are_resolved_for_type_and_map_to(run_import: Callable[..., Any]) -> None:
    result = run_import(ALIASED)
    assert result.exit_code == 0, result.output
    assert "FLAG" not in result.stderr.replace("FLAG: the platform's built-in", "")
    document = tomlkit.parse(result.stdout)
    assert [(h["name"], h["type"]) for h in document["handlers"]] == [
        ("mail", "send-email"),
        ("mail2", "send-email"),
    ]
    assert "# from CSS.CMS.Agents.Server.Handlers.SendEmailOrchestratorJobCompleteHandler" in (
        result.stdout
    )


def test_an_alias_in_the_unity_namespace_applies_to_commented_registrations(
    run_import: Callable[..., Any],
) -> None:
    alias = (
        '<alias alias="Mailer" type="CSS.CMS.Agents.Server.Handlers.'
        'SendEmailOrchestratorJobCompleteHandler, CSS.CMS.Agents.Server" />'
    )
    registration = BUILT_IN.replace(
        'mapTo="CSS.CMS.Agents.Server.Handlers.SendEmailOrchestratorJobCompleteHandler, '
        'CSS.CMS.Agents.Server"',
        'mapTo="Mailer"',
    )
    text = web_config(alias, commented=registration)
    result = run_import(text, "--include-commented")
    assert result.exit_code == 0, result.output
    (handler,) = tomlkit.parse(result.stdout)["handlers"]
    assert (handler["type"], handler["enabled"]) == ("send-email", False)


def test_a_file_without_registrations_gives_a_file_that_starts_with_its_header(
    run_import: Callable[..., Any], cli: Any, write_config: WriteConfig
) -> None:
    result = run_import(web_config())
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Imported from the platform's handler registrations.\n")
    assert tomlkit.parse(result.stdout).get("handlers", []) == []
    valid = validate(cli, write_config, result.stdout)
    assert valid.exit_code == 0, valid.output
    assert "0 handlers registered" in valid.stdout


def test_a_name_that_cannot_be_a_handler_name_is_renamed_and_flagged(
    run_import: Callable[..., Any],
) -> None:
    """Command takes any name; jobhooks names are part of addresses, without '/' or edge
    spaces: the import gives a name validate accepts, and says what it changed."""
    text = web_config(custom_handler(name="Ops/Email") + custom_handler(name="Email Ops "))

    result = run_import(text)

    assert result.exit_code == 0, result.output
    names = [handler["name"] for handler in tomlkit.parse(result.stdout)["handlers"]]
    assert names == ["Ops-Email", "Email Ops"]
    assert "renamed from 'Ops/Email'" in result.stderr
    assert "renamed from 'Email Ops '" in result.stderr


def test_a_name_given_twice_in_a_manifest_object_is_an_error_naming_it(
    run_import: Callable[..., Any], tmp_path: Path
) -> None:
    """The platform's JSON configuration refuses such a file; the importer must not keep
    one of the two silently."""
    entry = '{"TypeFullName": "X.Y, X", "Options": {"JobTypes": "%s"}}'
    text = (
        '{"extensions": {"Keyfactor.IOrchestratorJobCompleteHandler": {'
        f'"alerts": {entry % "a"}, "alerts": {entry % "b"}'
        "}}}"
    )
    result = run_import(text, name="manifest.json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f'error: {tmp_path / "manifest.json"}: "alerts" is given twice in one object' in (
        result.stderr
    )


def test_a_value_already_naming_a_variable_is_listed_and_not_given_out_again(
    run_import: Callable[..., Any],
) -> None:
    named = "env:JOBHOOKS_RELAY_PASSWORD"
    block = COLLIDING.format(name="relay", job_type=INVENTORY, password=named)
    other = COLLIDING.format(name="Relay", job_type=MANAGEMENT, password="plain-one")
    result = run_import(web_config(block, other))
    assert result.exit_code == 0, result.output
    first, second = tomlkit.parse(result.stdout)["handlers"]
    assert first["properties"]["Password"] == named
    assert "#   JOBHOOKS_RELAY_PASSWORD  <- Password of relay (named in the source)" in (
        result.stdout
    )
    assert second["properties"]["Password"] == "env:JOBHOOKS_RELAY_PASSWORD_2"
    assert "plain-one" not in result.stdout


def test_a_variable_a_later_registration_names_is_not_given_to_an_earlier_secret(
    run_import: Callable[..., Any],
) -> None:
    first = COLLIDING.format(name="h1", job_type=INVENTORY, password="hunter2")
    second = COLLIDING.format(name="h2", job_type=MANAGEMENT, password="env:JOBHOOKS_H1_PASSWORD")
    result = run_import(web_config(first, second))
    assert result.exit_code == 0, result.output
    one, two = tomlkit.parse(result.stdout)["handlers"]
    assert two["properties"]["Password"] == "env:JOBHOOKS_H1_PASSWORD"
    assert one["properties"]["Password"] == "env:JOBHOOKS_H1_PASSWORD_2", "never shared"
    assert "hunter2" not in result.output


def test_a_reference_no_variable_can_be_named_is_flagged_not_listed(
    run_import: Callable[..., Any],
) -> None:
    block = COLLIDING.format(name="relay", job_type=INVENTORY, password="env:BAR BAZ")
    result = run_import(web_config(block))
    assert result.exit_code == 0, result.output
    assert "FLAG relay: Password is 'env:BAR BAZ', and no environment variable" in result.stderr
    assert "set BAR BAZ" not in result.stderr and "BAR BAZ  <-" not in result.stdout


_EXTERNAL = "file:///etc/hostname"


@pytest.mark.parametrize(
    ("doctype", "said"),
    [
        # XXE through a parameter entity: was read as if the DTD were not there.
        (f'<!DOCTYPE c [<!ENTITY % p SYSTEM "{_EXTERNAL}"> %p;]>', "XML entity %p;"),
        # An external DTD: its entities, undefined here, were dropped without a word.
        ('<!DOCTYPE c SYSTEM "http://127.0.0.1:9/evil.dtd">', "external DTD"),
        # XXE and a billion laughs: were refused with expat's words only.
        (f'<!DOCTYPE c [<!ENTITY x SYSTEM "{_EXTERNAL}">]>', "XML entity &x;"),
        ('<!DOCTYPE c [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>', "XML entity &a;"),
    ],
)  # fmt: skip
def test_a_document_type_with_entities_or_an_external_dtd_is_refused(
    run_import: Callable[..., Any], tmp_path: Path, doctype: str, said: str
) -> None:
    registration = SAMPLE.replace(f'value="{INVENTORY},{MANAGEMENT}"', 'value="&x;"')
    text = f'<?xml version="1.0"?>\n{doctype}\n<configuration>{registration}</configuration>\n'
    result = run_import(text)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"error: {tmp_path / 'web.config'}: line 2: " in result.stderr
    assert said in result.stderr
    assert "refused" in result.stderr


def test_a_plain_document_type_declaration_is_read() -> None:
    text = f"<!DOCTYPE configuration>\n<configuration>{SAMPLE}</configuration>"
    (handler,) = read_webconfig(text).handlers
    assert handler.job_types == [INVENTORY, MANAGEMENT]
