"""``log``: one JSON line per completion, at the configured level."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobhooks.dispatch.execute import run_attempt
from jobhooks.logs import JsonFormatter
from jobhooks.registry.build import load
from jobhooks.testing import sample_context

WriteConfig = Callable[..., Path]


def log_config(level: str | None) -> str:
    setting = f'level = "{level}"' if level else ""
    return f"""
        [[handlers]]
        name = "log-everything"
        type = "log"
        job_types = "*"
        [handlers.properties]
        {setting}
    """


@pytest.mark.parametrize(
    ("level", "expected"),
    [(None, logging.INFO), ("debug", logging.DEBUG), ("warning", logging.WARNING),
     ("error", logging.ERROR)],
)  # fmt: skip
def test_one_json_line_per_completion_at_the_level(
    write_config: WriteConfig,
    caplog: pytest.LogCaptureFixture,
    level: str | None,
    expected: int,
) -> None:
    registered = load(write_config(log_config(level))).registry.get("log-everything")
    assert registered is not None
    contexts = [sample_context(message="line one\nline two"), sample_context(job_result="success")]

    async def run() -> None:
        for context in contexts:
            assert (await run_attempt(registered, context)).succeeded

    with caplog.at_level(logging.DEBUG, logger="jobhooks.handlers.log"):
        asyncio.run(run())
    records = [record for record in caplog.records if record.name == "jobhooks.handlers.log"]
    assert [record.levelno for record in records] == [expected, expected]
    for record, context in zip(records, contexts, strict=True):
        text = record.getMessage()
        assert "\n" not in text, "one line, whatever the message holds"
        assert json.loads(text) == {"handler": "log-everything", **context.to_dict()}


def test_below_the_logger_level_nothing_is_written(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    registered = load(write_config(log_config("debug"))).registry.get("log-everything")
    assert registered is not None
    with caplog.at_level(logging.INFO, logger="jobhooks.handlers.log"):
        assert asyncio.run(run_attempt(registered, sample_context())).succeeded
    assert [r for r in caplog.records if r.name == "jobhooks.handlers.log"] == []


def test_an_unknown_level_is_a_registration_error(cli: Any, write_config: WriteConfig) -> None:
    result = cli("validate", "-c", str(write_config(log_config("loud"))))
    assert result.exit_code == 1
    assert "handlers[0] 'log-everything': property level:" in result.stderr
    assert "'debug', 'info', 'warning', 'error'" in result.stderr


def test_with_json_logs_the_line_is_one_object_of_the_completions_fields(
    write_config: WriteConfig,
) -> None:
    registered = load(write_config(log_config(None))).registry.get("log-everything")
    assert registered is not None
    context = sample_context(message="Access denied")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("jobhooks.handlers.log")
    logger.addHandler(handler)
    try:
        with_level = logger.level
        logger.setLevel(logging.INFO)
        assert asyncio.run(run_attempt(registered, context)).succeeded
    finally:
        logger.removeHandler(handler)
        logger.setLevel(with_level)
    (line,) = out.getvalue().splitlines()
    data = json.loads(line)
    assert data["level"] == "INFO" and data["logger"] == "jobhooks.handlers.log"
    assert {key: data[key] for key in context.to_dict()} == context.to_dict()
    assert data["handler"] == "log-everything"
