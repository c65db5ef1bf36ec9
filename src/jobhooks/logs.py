"""Logging of a jobhooks process: plain text for people, or one JSON object per line for a
log collector (``--log-format json`` or ``[server] log_format = "json"``).

A record may carry ``json_fields`` (a dict, passed as ``extra``): in JSON the fields are
keys of the line's object; in text the message is printed as it is. The ``log`` handler
logs each completion so.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Any, Literal, get_args

from jobhooks.escapes import escape_controls, json_without_controls

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "JsonFormatter",
    "LogFormat",
    "LogSetup",
    "TextFormatter",
    "configure_logging",
    "current_setup",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
"""What ``sys.exc_info()`` gives, as a formatter is handed it."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

LogSetup = tuple[str, LogFormat]
"""A level name and a format, as :func:`configure_logging` takes them."""

_current: LogSetup = ("warning", "text")
_MARK = "_jobhooks_handler"

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_SKIPPED = {"json_fields", "color_message"}  # uvicorn's copy of the message with ANSI colours


class TextFormatter(logging.Formatter):
    """One line per record, with the message's line breaks and other control characters
    written as escapes: what a report holds can neither forge a line nor act on the
    terminal of someone following the log. A traceback keeps its lines, each indented,
    so that only a record's own first line starts at the margin."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record).rstrip("\n"), keep="\t")

    def formatException(self, ei: ExcInfo) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(block: str) -> str:
    return "\n".join(f"  {line}" for line in escape_controls(block, keep="\n\t").split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (ISO 8601 UTC), ``level``,
    ``logger``, ``message``, the record's ``json_fields`` or other ``extra`` values, and
    ``exception`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "json_fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in _SKIPPED and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json_without_controls(json.dumps(line, ensure_ascii=False, default=str))


def configure_logging(level: str, log_format: LogFormat, stream: IO[str] | None = None) -> None:
    """Send every logger's records at ``level`` and above to ``stream`` (stderr), as text or
    as JSON lines. Called again, it replaces its own handler; when something else already
    set up the root logger (an application or a test runner running jobhooks in-process),
    that setup is left as it is, as :func:`logging.basicConfig` would."""
    global _current
    root = logging.getLogger()
    for installed in [handler for handler in root.handlers if getattr(handler, _MARK, False)]:
        root.removeHandler(installed)
    if not root.handlers:
        handler = logging.StreamHandler(stream or sys.stderr)
        formatter = JsonFormatter() if log_format == "json" else TextFormatter()
        handler.setFormatter(formatter)
        setattr(handler, _MARK, True)
        root.addHandler(handler)
        root.setLevel(level.upper())
        _current = (level, log_format)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # One line per request to the platform would drown the poller's own messages.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def current_setup() -> LogSetup:
    """The level and format :func:`configure_logging` last installed, for a child process
    to log alike (and for messages to know whether lines must be JSON)."""
    return _current
