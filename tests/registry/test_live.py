"""A reload as the log tells it: what was refused, readable on one line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support.server import write_config

from jobhooks.logs import TextFormatter
from jobhooks.registry import load
from jobhooks.registry.live import LiveConfig


def test_a_refused_reload_names_each_problem_on_one_readable_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path, '[[handlers]]\nname = "audit"\ntype = "log"\njob_types = "*"\n')
    live = LiveConfig(load(config), config)
    config.write_text("[server]\nretention_days = 0\nlisten = 5\n", encoding="utf-8")

    with caplog.at_level(logging.ERROR, logger="jobhooks"):
        status = live.reload()

    assert not status.applied
    [record] = [r for r in caplog.records if "reload refused" in r.getMessage()]
    line = TextFormatter().format(record)
    assert "\\n" not in line and "\n" not in line
    assert "retention_days" in line and "listen" in line
