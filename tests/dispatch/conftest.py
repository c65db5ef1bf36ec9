"""Registrations of ``support.handlers`` types for the dispatch tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.registrations import Register, build_registry

from jobhooks.registry import RegisteredHandler


@pytest.fixture
def register(tmp_path: Path) -> Register:
    """``register("Raises", timeout=0.2)`` -> the registration of ``support.handlers:Raises``."""

    def make(handler_type: str, **fields: Any) -> RegisteredHandler:
        fields = {
            "name": handler_type.lower(),
            "type": f"support.handlers:{handler_type}",
            **fields,
        }
        registered = build_registry(tmp_path, fields).get(fields["name"])
        assert registered is not None
        return registered

    return make
