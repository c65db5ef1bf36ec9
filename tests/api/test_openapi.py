"""Schemathesis over /openapi.json with every check: the API answers as it documents.

Every operation gets a bounded number of generated requests with an admin
token, so the operator endpoints are exercised too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.python import asgi
from support.server import write_config
from support.tokens import make_token_info

from jobhooks.registry import load
from jobhooks.service.runtime import Runtime
from jobhooks.web import create_app


@pytest.fixture
def running_app(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    # One app per test: schemathesis ends every ASGI app's lifespan when a test ends.
    directory = tmp_path
    config = write_config(
        directory,
        f"""
        [[handlers]]
        name = "record"
        type = "support.handlers:Appender"
        job_types = "*"
        properties = {{ path = "{directory / "record.log"}" }}

        [[handlers]]
        name = "page"
        type = "log"
        job_types = "*"
        when = ["failure-streak", "recovered"]
        streak = 1

        [[handlers]]
        name = "digest"
        type = "log"
        job_types = "*"
        group_by = ["client_machine"]
        """,
    )
    runtime = Runtime(load(config), config)
    admin, _info = make_token_info(runtime.store, "admin")
    app = create_app(runtime)
    try:
        yield app, admin
    finally:
        # Schemathesis started the app's lifespan; end it (and the runtime) now.
        asgi.shutdown_lifespans()


@pytest.fixture
def api_schema(running_app: tuple[Any, str]) -> Any:
    app, _admin = running_app
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture
def admin_headers(running_app: tuple[Any, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {running_app[1]}"}


def _operations() -> list[tuple[str, str]]:
    # The document describes the routes without a running app behind them.
    paths = create_app(None).openapi()["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


@pytest.mark.parametrize(
    ("method", "path"), _operations(), ids=[" ".join(o) for o in _operations()]
)
def test_every_generated_request_is_answered_as_documented(
    api_schema: Any, admin_headers: dict[str, str], method: str, path: str
) -> None:
    operation = api_schema[path][method]
    # Valid requests, and (where the operation has inputs to break) invalid ones.
    cases = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
        GenerationMode.NEGATIVE
    )

    @given(case=cases)
    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any) -> None:
        # Every check schemathesis has: no 5xx, documented statuses, content types and
        # bodies, valid input accepted, invalid input refused.
        case.call_and_validate(headers=admin_headers, timeout=10)

    call()


def test_the_documented_enum_values_are_exactly_what_the_parser_accepts() -> None:
    import typing

    from jobhooks import JobResult, OperationType
    from jobhooks.api.schemas import JobResultValue, OperationTypeValue

    for documented, enum in ((JobResultValue, JobResult), (OperationTypeValue, OperationType)):
        expected = {m.value for m in enum} | {m.display for m in enum}
        assert set(typing.get_args(documented)) == expected
        for value in expected:
            assert enum.parse(value) in enum
