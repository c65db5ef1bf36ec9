"""Logs as text for people, or one JSON object per line for a log collector."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import jobhooks.logs
from jobhooks.logs import JsonFormatter, configure_logging, current_setup


@contextmanager
def bare_root_logger() -> Iterator[None]:
    """A root logger without handlers (as in a fresh process), put back as it was after."""
    root = logging.getLogger()
    handlers, level, setup = root.handlers[:], root.level, current_setup()
    root.handlers[:] = []
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        jobhooks.logs._current = setup


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("jobhooks.worker", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_record_is_one_json_object_on_one_line() -> None:
    line = JsonFormatter().format(record("worker %s stalled\nfor %d s", "w1", 7))
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "WARNING" and data["logger"] == "jobhooks.worker"
    assert data["message"] == "worker w1 stalled\nfor 7 s"
    assert data["time"].endswith("Z") and "T" in data["time"]


def test_json_fields_are_the_objects_own_keys() -> None:
    fields = {"handler": "audit", "job_type": "Inventory", "message": "Access denied"}
    data = json.loads(JsonFormatter().format(record("{...}", json_fields=fields)))
    assert {key: data[key] for key in fields} == fields
    assert data["logger"] == "jobhooks.worker"


def test_extra_values_and_the_traceback_are_kept() -> None:
    try:
        raise RuntimeError("relay refused")
    except RuntimeError:
        failed = record("sending failed", details=["one", "two"])
        failed.exc_info = sys.exc_info()
    data = json.loads(JsonFormatter().format(failed))
    assert data["details"] == ["one", "two"]
    assert "RuntimeError: relay refused" in data["exception"]


def test_configure_logging_as_json_or_text() -> None:
    with bare_root_logger():
        first = io.StringIO()
        configure_logging("info", "json", first)
        logging.getLogger("jobhooks.test").info("hello %s", "there")
        logging.getLogger("jobhooks.test").debug("not at info")
        assert current_setup() == ("info", "json")
        second = io.StringIO()
        configure_logging("warning", "text", second)
        logging.getLogger("jobhooks.test").info("quiet")
        logging.getLogger("jobhooks.test").warning("loud")
        handlers = len(logging.getLogger().handlers)
    (line,) = first.getvalue().splitlines()
    assert json.loads(line)["message"] == "hello there"
    assert second.getvalue().endswith(" WARNING jobhooks.test: loud\n")
    assert handlers == 1, "its own handler replaced, not added to"


def test_a_root_logger_set_up_elsewhere_is_left_alone() -> None:
    root = logging.getLogger()
    before = root.handlers[:]
    assert before, "pytest's own capture handlers"
    setup = current_setup()
    configure_logging("debug", "json", io.StringIO())
    assert root.handlers == before
    assert current_setup() == setup


def test_a_text_line_cannot_be_forged_or_act_on_a_terminal() -> None:
    """A report's message logged as text stays on its own line, escape sequences shown."""
    message = "done\n2026-12-06 10:00:00,000 ERROR jobhooks: forged\r\x1b[2J\x9b2J\u202eevil"
    with bare_root_logger():
        out = io.StringIO()
        configure_logging("info", "text", out)
        logging.getLogger("jobhooks.handlers").warning("completion: %s", message)
        try:
            raise RuntimeError("relay said\x1b[31m no\n2026-12-06 forged")
        except RuntimeError:
            logging.getLogger("jobhooks.worker").exception("attempt failed\ttab kept")

    lines = out.getvalue().splitlines()
    assert lines[0].endswith(
        "WARNING jobhooks.handlers: completion: done\\n2026-12-06 10:00:00,000 ERROR "
        "jobhooks: forged\\r\\x1b[2J\\x9b2J\\u202eevil"
    )
    assert lines[1].endswith("ERROR jobhooks.worker: attempt failed\ttab kept")
    assert lines[2] == "  Traceback (most recent call last):"
    assert lines[-2:] == ["  RuntimeError: relay said\\x1b[31m no", "  2026-12-06 forged"]
    assert "\x1b" not in out.getvalue()


def test_a_json_line_carries_no_character_that_acts() -> None:
    """JSON escapes the C0 controls itself; the 8-bit ones, bidi overrides and the
    Unicode line separators are escaped too, and the line reads back the same."""
    message = "evil\u202emoc \x9b2J \u2028 é 日本"
    line = JsonFormatter().format(record("%s", message))

    assert not any(char in line for char in "\u202e\x9b\u2028")
    assert "\\u202e" in line and "\\u009b" in line and "é 日本" in line
    assert json.loads(line)["message"] == message
