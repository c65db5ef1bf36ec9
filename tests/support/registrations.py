"""Registrations of the test handler types, built the way ``jobhooks serve`` builds them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobhooks.registry import RegisteredHandler, Registry, load

Register = Callable[..., RegisteredHandler]


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return str(value).lower() if isinstance(value, bool) else str(value)


def build_registry(directory: Path, *registrations: dict[str, Any]) -> Registry:
    """A registry from ``[[handlers]]`` tables given as dicts (``properties`` a dict too)."""
    text = ""
    for registration in registrations:
        fields = dict(registration)
        properties = fields.pop("properties", {})
        fields.setdefault("job_types", "*")
        text += "[[handlers]]\n"
        text += "".join(f"{key} = {_toml(value)}\n" for key, value in fields.items())
        if properties:
            inline = ", ".join(f"{key} = {_toml(value)}" for key, value in properties.items())
            text += f"properties = {{ {inline} }}\n"
    path = directory / "jobhooks.toml"
    path.write_text(text, encoding="utf-8")
    return load(path).registry
