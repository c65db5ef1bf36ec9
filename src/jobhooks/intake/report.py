"""A check-in's body and headers as a report to store, or why it cannot be one."""

from __future__ import annotations

import json
from typing import Any

import orjson

from jobhooks.errors import FieldProblem, ReportRejected
from jobhooks.sdk.context import LONGEST_NUMBER, MAX_PROBLEMS, LongNumber, parse_fields
from jobhooks.store.tokens import TokenInfo

__all__ = ["MAX_IDEMPOTENCY_KEY", "SET_BY_JOBHOOKS", "read_report"]

MAX_IDEMPOTENCY_KEY = 200
SET_BY_JOBHOOKS = ("completion_id", "source", "attempt", "trigger")
"""Context fields jobhooks fills in; a reporter may not."""


def _decode(body: bytes) -> dict[str, Any]:
    if not body:
        raise ReportRejected("malformed", "the body is empty; send the completion as a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = _decode_strictly(body)
    if not isinstance(data, dict):
        raise ReportRejected(
            "invalid", f"the body must be a JSON object, not {type(data).__name__}"
        )
    return data


def _decode_strictly(body: bytes) -> Any:
    """The standard library's reading of a body the fast decoder refused: its messages
    say where the JSON is wrong, and it takes what JSON allows but orjson does not (a
    byte-order mark, half a surrogate pair, which the fields' checks then name)."""
    try:
        return json.loads(body, parse_int=_integer)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportRejected("malformed", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ReportRejected(
            "malformed", "the body is not a completion: its JSON is nested too deeply"
        ) from None


def _integer(text: str) -> int | LongNumber:
    # A number too long for any field is named by its length: reading it costs, and
    # past 4,300 digits Python refuses it with advice for programmers.
    return int(text) if len(text) <= LONGEST_NUMBER else LongNumber(len(text))


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_IDEMPOTENCY_KEY and all(" " <= ch <= "~" for ch in key)


def read_report(
    body: bytes, token: TokenInfo, idempotency_key: str | None = None
) -> dict[str, Any]:
    """The context fields of a check-in, parsed (UUIDs, enums, times), with ``source``.

    Raises :class:`ReportRejected`: ``malformed`` for a body that is not JSON or an
    unusable Idempotency-Key, ``invalid`` listing every wrong field, ``forbidden`` for
    an agent token reporting for another agent.
    """
    fields, problems = parse_fields(_decode(body))
    problems += [
        FieldProblem(name, "is set by jobhooks, not by the reporter")
        for name in SET_BY_JOBHOOKS
        if name in fields
    ]
    # SQLite would keep a NUL character in text; PostgreSQL cannot store one. JSON can
    # only carry one escaped, so a body without the escape needs no look at its fields.
    if b"\\u0000" in body:
        problems += [
            FieldProblem(name, "contains a NUL character (\\u0000), which cannot be stored")
            for name, value in fields.items()
            if isinstance(value, str) and "\x00" in value
        ]
    if problems:
        count = len(problems)
        if count > MAX_PROBLEMS:
            more = count - MAX_PROBLEMS
            problems = [*problems[:MAX_PROBLEMS], FieldProblem("body", f"and {more} more")]
        raise ReportRejected(
            "invalid",
            f"{count} invalid field{'s' if count > 1 else ''}: "
            + "; ".join(str(problem) for problem in problems),
            problems,
        )
    if token.role == "agent" and token.agent_id != fields["agent_id"]:
        raise ReportRejected(
            "forbidden",
            f"this token reports for agent {token.agent_id}, not for {fields['agent_id']}",
            [FieldProblem("agent_id", "does not match the token's agent")],
        )
    if idempotency_key is not None and not _valid_key(idempotency_key):
        raise ReportRejected(
            "malformed",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
        )
    fields["source"] = "check-in"
    return fields
