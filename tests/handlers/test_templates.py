"""Sandboxed Jinja2 templates: registration errors, undefined names, data never rendered as code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SmtpSink

from jobhooks.dispatch.execute import run_attempt
from jobhooks.dispatch.outcome import Outcome
from jobhooks.handlers._templates import compile_template, render, template_variables
from jobhooks.registry.build import load
from jobhooks.sdk.context import DATA_FIELDS
from jobhooks.testing import sample_context

WriteConfig = Callable[..., Path]


def mail_config(sink: SmtpSink, **templates: str) -> str:
    properties = "\n".join(f"{name} = {json.dumps(text)}" for name, text in templates.items())
    return f"""
        [[handlers]]
        name = "templated-mail"
        type = "send-email"
        job_types = "*"
        timeout = 5
        [handlers.properties]
        SmtpServer = "{sink.host}"
        SmtpPort = {sink.port}
        MailFrom = "jobhooks@example.com"
        EmailRecipients = "pki-team@example.com"
        {properties}
    """


def attempt(config: Path, **context: Any) -> Outcome:
    registered = load(config).registry.get("templated-mail")
    assert registered is not None
    return asyncio.run(run_attempt(registered, sample_context(**context)))


@pytest.mark.parametrize(
    ("handler_type", "prop", "extra"),
    [
        ("send-email", "subject", 'SmtpServer = "127.0.0.1"\nMailFrom = "a@example.com"\n'
         'EmailRecipients = "b@example.com"'),
        ("repeated-failure-email", "body", 'SmtpServer = "127.0.0.1"\nMailFrom = "a@example.com"\n'
         'EmailRecipients = "b@example.com"'),
        ("notify", "title", 'urls = "json://127.0.0.1:9/hook"'),
    ],
)  # fmt: skip
def test_a_template_that_does_not_compile_is_reported_by_validate(
    cli: Any, write_config: WriteConfig, handler_type: str, prop: str, extra: str
) -> None:
    config = write_config(
        f"""
        [[handlers]]
        name = "broken-template"
        type = "{handler_type}"
        job_types = "*"
        [handlers.properties]
        {extra}
        {prop} = "Job {{{{ job_type }} failed"
        """
    )
    result = cli("validate", "-c", str(config))
    assert result.exit_code == 1
    (line,) = [line for line in result.stderr.splitlines() if "broken-template" in line]
    assert f"handlers[0] 'broken-template': property {prop}: the template does not compile" in line
    assert "line" in line.split("does not compile", 1)[1]


def test_an_undefined_name_fails_the_attempt_and_sends_nothing(
    write_config: WriteConfig, smtp_sink: SmtpSink
) -> None:
    config = write_config(mail_config(smtp_sink, body="{{ job_typ }} on {{ client_machine }}"))
    outcome = attempt(config)
    assert not outcome.succeeded
    assert outcome.error == "ValueError: the body template failed: 'job_typ' is undefined"
    assert smtp_sink.messages == []


def test_an_undefined_name_in_a_branch_not_taken_is_fine(
    write_config: WriteConfig, smtp_sink: SmtpSink
) -> None:
    config = write_config(
        mail_config(
            smtp_sink, subject="{% if failed %}{{ job_type }}{% else %}{{ nope }}{% endif %}"
        )
    )
    assert attempt(config).succeeded
    assert smtp_sink.messages[0]["Subject"] == "Inventory"


@pytest.mark.parametrize(
    "value",
    [
        "{{ 7*7 }}",
        "{% for x in range(3) %}X{% endfor %}",
        "{{ ''.__class__.__mro__ }}",
        "{# comment #}{%- raw %}",
    ],
)
def test_values_are_inserted_literally_never_evaluated(
    write_config: WriteConfig, smtp_sink: SmtpSink, value: str
) -> None:
    config = write_config(
        mail_config(smtp_sink, subject="[{{ job_type }}] {{ message }}", body="<{{ message }}>")
    )
    outcome = attempt(config, job_type=value, message=value)
    assert outcome.succeeded, outcome.error
    (message,) = smtp_sink.messages
    # strip(): the stdlib folds a long first word onto a continuation line.
    assert message["Subject"].strip() == f"[{value}] {value}"
    assert message.get_content().strip() == f"<{value}>"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ job_type.__class__.__mro__[1].__subclasses__() }}",
        "{{ message.__init__.__globals__ }}",
        "{{ job_type.format.__self__ }}",
        "{{ cycler.__init__.__globals__.os }}",
    ],
)
def test_the_sandbox_refuses_to_reach_python_internals(
    write_config: WriteConfig, smtp_sink: SmtpSink, template: str
) -> None:
    outcome = attempt(write_config(mail_config(smtp_sink, body=template)))
    assert not outcome.succeeded
    assert outcome.error is not None
    assert outcome.error.startswith("ValueError: the body template failed:")
    assert any(word in outcome.error for word in ("unsafe", "undefined", "no attribute"))
    assert smtp_sink.messages == []


def test_a_sandbox_refusal_is_not_a_value_anywhere() -> None:
    template = compile_template("{{ ''.__class__ }}", "title")
    with pytest.raises(ValueError, match=r"the title template failed: .*unsafe"):
        render(template, sample_context(), "title")


def test_every_context_field_and_failed_are_variables() -> None:
    context = sample_context(job_result="success", job_history_id=2170, certificate_id=12)
    variables = template_variables(context)
    assert set(variables) == {*DATA_FIELDS, "failed", "group", "group_size"}
    assert variables["failed"] is False
    source = " ".join(f"{name}={{{{ {name} }}}}" for name in sorted(variables))
    rendered = render(compile_template(source, "body"), context, "body")
    assert "job_result=Success" in rendered
    assert "job_history_id=2170" in rendered and "certificate_id=12" in rendered
    assert f"job_id={context.job_id}" in rendered
    assert "failed=False" in rendered
