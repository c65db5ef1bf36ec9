"""Bounded templates: a rendering that runs on or builds too much fails its attempt at
once, saying which limit it hit, and the node goes on serving meanwhile."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from support import cli as jobhooks_cli
from support.reports import AGENT_A, report
from support.server import ServerProcess, wait_for
from support.server import write_config as server_config

from jobhooks.handlers._templates import compile_template, render
from jobhooks.testing import sample_context

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
        ("{{ '%*d' % (2000000000, 1) }}", "characters"),
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
        # About 5 s of work on a 2026 machine, a result within the size limit: only the
        # clock can stop it (60,000 lists took 0.9 s, under the limit, on a fast one).
        ("{{ ([['x']] * 140000) | sum(start=[]) | length }}", "stopped after"),
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
        ("{{ ('%(a)999999s' * 100) % {'a': ''} }}", "characters"),
        ("{{ ('{0:999999}' * 100).format('') }}", "characters"),
        ("{{ (range(1000) | list) | tojson(' ' * 999999) }}", "characters"),
        ("{% set s = 'x' * 999999 %}{{ ([s] * 1000000) | unique | list | length }}", "characters"),
        ("{% set s = 'x' * 999999 %}{% set a = [s] %}{{ (a + a) | length }}", "characters"),
        (
            "{% set l = [] %}{% for i in range(10) %}{{ l.append('x' * 999999) }}{% endfor %}",
            "unsafe",
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
