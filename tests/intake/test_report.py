"""A check-in's body read as a report: the fast JSON decoder reads what the standard library
reads, and any body at all is a report or a rejection saying why (never another error)."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.reports import AGENT_A, report

from jobhooks.errors import ReportRejected
from jobhooks.intake import report as report_module
from jobhooks.intake.report import read_report
from jobhooks.sdk.context import DATA_FIELDS
from jobhooks.store.tokens import TokenInfo

ADMIN = TokenInfo("t-admin", "admin", None, None, 0.0, None)
AGENT = TokenInfo("t-agent", "agent", AGENT_A, None, 0.0, None)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
keys = st.sampled_from([*DATA_FIELDS, "JobResult", "AgentId", "CurrentRetryCount"]) | st.text(
    max_size=12
)


class _StandardLibraryOnly:
    """Stands in for orjson: refuses every body, so the standard library reads it."""

    JSONDecodeError = orjson.JSONDecodeError

    @staticmethod
    def loads(_body: bytes) -> Any:
        raise orjson.JSONDecodeError("refused", "", 0)


def _read(body: bytes, token: TokenInfo) -> tuple[str, Any]:
    """What a user sees of reading ``body``: the fields, or the rejection and the fields
    it names (messages may word a number past 64 bits differently)."""
    try:
        return "read", read_report(body, token)
    except ReportRejected as rejected:
        return rejected.reason, sorted(problem.field for problem in rejected.problems)


def _both_ways(body: bytes, token: TokenInfo = ADMIN) -> tuple[tuple[str, Any], tuple[str, Any]]:
    fast = _read(body, token)
    with mock.patch.object(report_module, "orjson", _StandardLibraryOnly):
        reference = _read(body, token)
    return fast, reference


@settings(max_examples=300)
@given(changes=st.dictionaries(keys, json_values, max_size=4))
def test_any_report_is_read_as_the_standard_library_reads_it(changes: dict[str, Any]) -> None:
    body = json.dumps({**report(), **changes}).encode()

    fast, reference = _both_ways(body)

    assert fast == reference


@pytest.mark.parametrize(
    "body",
    [
        b'{"job_history_id": 1e400}',
        b'{"current_retry_count": NaN, "job_id": "x"}',
        b'{"message": "half a pair \\ud800"}',
        b'\xef\xbb\xbf{"job_type": "Inventory"}',
        b'{"a": 1,}',
        b"[" * 3000 + b"]" * 3000,
        b'{"job_type": "\xff"}',
    ],
)
def test_what_the_fast_decoder_refuses_is_judged_by_the_standard_library(body: bytes) -> None:
    fast, reference = _both_ways(body)

    assert fast == reference
    assert fast[0] in ("malformed", "invalid")


@settings(max_examples=300)
@given(body=st.binary(max_size=300) | st.builds(bytes.__add__, st.just(b'{"'), st.binary()))
def test_any_bytes_at_all_are_a_report_or_a_rejection_saying_why(body: bytes) -> None:
    kind, _ = _read(body, AGENT)

    assert kind in ("read", "malformed", "invalid", "forbidden")


@settings(max_examples=200)
@given(position=st.integers(min_value=0, max_value=400), junk=st.binary(min_size=1, max_size=4))
def test_a_report_with_bytes_spliced_in_is_read_or_refused_the_same_both_ways(
    position: int, junk: bytes
) -> None:
    body = json.dumps(report()).encode()
    spliced = body[:position] + junk + body[position:]

    fast, reference = _both_ways(spliced)

    assert fast == reference
