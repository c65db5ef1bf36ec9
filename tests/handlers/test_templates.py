"""Sandboxed Jinja2 templates: registration errors, undefined names, data never rendered as code."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SmtpSink
from support import cli as jobhooks_cli
from support.reports import AGENT_A, report
from support.server import ServerProcess, wait_for
from support.server import write_config as server_config

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


RUNAWAY = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


@pytest.mark.parametrize(
    ("source", "says"),
    [
        (RUNAWAY, "stopped after"),
        (
            "{% for a in message * 1000 %}{% for b in message * 1000 %}{% endfor %}{% endfor %}",
            "stopped after",
        ),
        (
            "{% for a in group %}{% for b in range(99999) %}{% for c in range(99999) %}"
            "{% endfor %}{% endfor %}{% endfor %}",
            "stopped after",
        ),
        ("{{ 'x' * 2000000000 }}", "2,000,000,000 characters"),
        ("{{ 'x' | center(2000000000) }}", "2,000,000,000 characters"),
        ("{{ 'x'.ljust(2000000000) }}", "2,000,000,000 characters"),
        ("{{ '%2000000000d' % 1 }}", "2,000,000,000 characters"),
        ("{{ '%*d' % (2000000000, 1) }}", "2,000,000,000 characters"),
        ("{{ '%2000000000d' | format(1) }}", "2,000,000,000 characters"),
        ("{{ '{:>2000000000}'.format(1) }}", "2,000,000,000 characters"),
        ("{{ message | replace('', message * 10000) }}", "characters"),
        ("{{ message | indent(900000, true) * 2 }}", "characters"),
        ("{{ ([message] * 1000000) | join }}", "characters"),
        ("{{ ', '.join([message] * 1000000) }}", "characters"),
        (
            '{% set ns = namespace(s="x") %}{% for i in range(64) %}'
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
            "characters",
        ),
        (
            "{% set ns = namespace(n=3) %}{% for i in range(64) %}"
            "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}",
            "characters",
        ),
        ("{{ 7 ** 100000000 }}", "characters"),
        ("{% for i in range(100000) %}{{ message }}{% endfor %}", "output passed"),
        ("{{ ([['x']] * 60000) | sum(start=[]) | length }}", "stopped after"),
        (
            "{% set big = [1] * 100000 %}"
            "{% for x in big %}{% for y in big if y %}{% endfor %}{% endfor %}",
            "stopped after",
        ),
        (
            "{% set big = [1] * 100000 %}{% for x in big %}{% for y in big %}{% endfor %}"
            "{% endfor %}",
            "stopped after",
        ),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ],
)
def test_a_template_that_runs_on_or_builds_too_much_fails_within_a_second(
    source: str, says: str
) -> None:
    """A runaway template fails the attempt at once, saying which limit it hit: the built-in
    handlers render on the worker's event loop, where it would otherwise stop the node."""
    template = compile_template(source, "body")
    context = sample_context(message="store unreachable: " + "x" * 40)
    start = time.monotonic()
    with pytest.raises(ValueError, match="the body template failed") as failure:
        render(template, context, "body")
    assert says in str(failure.value)
    assert time.monotonic() - start < 5


LONG = "{% set s = 'x' * 999999 %}{% set a = [s] * 1000 %}"


@pytest.mark.parametrize(
    "source",
    [
        LONG + "{{ a }}",
        LONG + "{{ a ~ '' }}",
        LONG + "{{ a | string | length }}",
        LONG + "{{ a | tojson | length }}",
        LONG + "{{ a | pprint | length }}",
        LONG + "{{ a | upper | length }}",
        LONG + "{{ {'k': a} | xmlattr | length }}",
        LONG + "{{ [a] | join | length }}",
        LONG + "{{ ('%s' % (a,)) | length }}",
        LONG + "{{ '{}'.format(a) | length }}",
        LONG + "{{ ''.join(['{}']).format(a) | length }}",
        LONG + "{% set ns = namespace(a=a) %}{{ ns }}",
        LONG + "{{ {'k': a}.items() }}",
        "{{ [(2 ** 2000) * (2 ** 2000)] * 100000 }}",
    ],
)
def test_a_value_whose_text_is_too_long_is_refused_before_it_is_built(source: str) -> None:
    """A list of a thousand strings of a million characters is a thousand references, but
    its text is a billion characters: refused before it is made (it took seconds and
    gigabytes on the event loop, and more would exhaust the node's memory)."""
    template = compile_template(source, "body")
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"the body template failed: .*characters"):
        render(template, sample_context(), "body")
    assert time.monotonic() - start < 0.5


def test_templates_within_the_limits_render_as_before() -> None:
    source = (
        "{% for m in group %}{{ m.job_id[:4] }}{% endfor %}"
        " {{ group | last | tojson | length > 5 }}"
        " {{ range(3) | list }} {{ range(5)[1:3] | list }} {{ '%d' | format(123456789012) }}"
        " [{{ '{:>12}'.format(job_type) }}] {{ job_type ~ '-' ~ 5 }}"
        " {{ group | map(attribute='client_machine') | join(',') }}"
        " {% for i in range(2) | reverse %}{{ i }}{% endfor %} {{ ', '.join(['x', 'y']) }}"
        " {{ 2 ** 10 }} {{ 'ab' * 3 }} {{ group_size * 2 }}"
    )
    context = sample_context(job_id="0b4b4f5e-0000-4000-8000-000000000000")
    assert render(compile_template(source, "body"), context, "body") == (
        "0b4b True [0, 1, 2] [1, 2] 123456789012 [   Inventory] Inventory-5"
        " orchestrator01.example.com 10 x, y 1024 ababab 2"
    )


def test_a_runaway_template_does_not_stop_the_node(tmp_path: Path) -> None:
    """A real ``jobhooks serve``: a notify handler whose body template never ends fails its
    attempt after a second, naming the limit, and check-ins and health checks meanwhile
    are answered (the template used to hold the event loop: both timed out, and the
    handler's timeout never fired)."""
    config = server_config(
        tmp_path,
        f"""
        [[handlers]]
        name = "runaway"
        type = "notify"
        job_types = "*"
        timeout = 5
        max_attempts = 1
        [handlers.properties]
        urls = "json://127.0.0.1:9/alerts"
        body = {json.dumps(RUNAWAY)}
        """,
    )
    token = jobhooks_cli.token(config, "--agent", str(AGENT_A))
    admin = jobhooks_cli.token(config, "--admin")
    server = ServerProcess(config, tmp_path / "server.log").start()
    try:
        with server.client(token) as client:
            assert client.post("/api/v1/job-completions", json=report()).status_code == 202
            time.sleep(0.3)  # the worker is rendering now
            started = time.monotonic()
            assert client.post("/api/v1/job-completions", json=report()).status_code == 202
            assert client.get("/healthz").status_code == 200
            assert time.monotonic() - started < 5

        def failed() -> list[dict[str, Any]] | None:
            with server.client(admin) as client:
                runs = client.get("/api/v1/handler-runs", params={"status": "dead"}).json()["items"]
            done = [run for run in runs if run["status"] in ("dead", "failed")]
            return done if len(done) == 2 else None

        for run in wait_for(failed, 30, "both runs to fail"):
            assert "stopped after 1 s" in str(run), run
    finally:
        server.stop()
