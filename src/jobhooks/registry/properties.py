"""Handler properties: declared as annotated class attributes, coerced from TOML or strings."""

from __future__ import annotations

import copy
import functools
import inspect
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin

from pydantic import ConfigDict, TypeAdapter, ValidationError

from jobhooks.config.load import describe_error, did_you_mean
from jobhooks.sdk.enums import normalise_name
from jobhooks.sdk.handler import JobCompleteHandler
from jobhooks.sdk.secret import Secret

__all__ = ["PropertySpec", "coerce_properties", "configured_handler", "property_specs"]

H = TypeVar("H", bound=JobCompleteHandler)

_MISSING: Any = object()
_LENIENT = ConfigDict(coerce_numbers_to_str=True)
_MAX_SHOWN = 100
"""Characters of a refused value that its problem shows."""


@dataclass(frozen=True)
class PropertySpec:
    """One property a handler type declares."""

    name: str
    annotation: Any
    default: Any
    adapter: TypeAdapter[Any]

    @property
    def required(self) -> bool:
        """True when a registration must give this property."""
        return self.default is _MISSING

    @property
    def pascal_name(self) -> str:
        """The seed's spelling of the name (``smtp_server`` -> ``SmtpServer``)."""
        return "".join(part[:1].upper() + part[1:] for part in self.name.split("_"))

    @property
    def secret(self) -> bool:
        """True when the value is a :class:`Secret`."""
        return _holds_secret(self.annotation)

    @property
    def type_text(self) -> str:
        """The expected type in words, for messages and the ``handlers`` listing."""
        return _describe(self.annotation)

    def shown_default(self) -> str:
        """The default as text, or ``required``."""
        if self.required:
            return "required"
        return repr(self.default)


def _holds_secret(annotation: Any) -> bool:
    """True when ``annotation`` is a Secret or holds one (``list[Secret]``, ``dict[str,
    Secret]``, optional ones): its values are then never shown."""
    if annotation is Secret:
        return True
    return any(_holds_secret(arg) for arg in get_args(annotation))


def _flatten(annotation: Any) -> set[Any]:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        return {leaf for arg in get_args(annotation) for leaf in _flatten(arg)}
    return {annotation}


def _describe(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(arg) for arg in get_args(annotation) if arg is not type(None)]
        optional = type(None) in get_args(annotation)
        return " or ".join(parts) + (" (optional)" if optional else "")
    if origin in (list, tuple, set, frozenset):
        (item, *_rest) = get_args(annotation) or (str,)
        return (
            f"a list of {_describe(item).removeprefix('a ').removeprefix('an ')}s "
            "(or a comma-separated string)"
        )
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in get_args(annotation))
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        Secret: "a secret (literal, env:NAME or file:PATH)",
    }.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _is_list(annotation: Any) -> bool:
    return any(get_origin(leaf) in (list, tuple, set, frozenset) for leaf in _flatten(annotation))


def property_specs(handler_class: type[JobCompleteHandler]) -> tuple[PropertySpec, ...]:
    """The properties a handler class declares, in declaration order. Raises
    ``TypeError`` naming the property when an annotation cannot be read or used."""
    found: tuple[PropertySpec, ...] = _property_specs(handler_class)  # type: ignore[arg-type]
    return found


@functools.cache
def _property_specs(handler_class: Any) -> tuple[PropertySpec, ...]:
    specs: dict[str, PropertySpec] = {}
    base_names = set(typing.get_type_hints(JobCompleteHandler, include_extras=True))
    for klass in reversed(handler_class.__mro__):
        if (
            klass is object
            or klass is JobCompleteHandler
            or not issubclass(klass, JobCompleteHandler)
        ):
            continue
        try:
            hints = typing.get_type_hints(klass, include_extras=True)
        except Exception as exc:
            raise TypeError(
                f"the annotations of {klass.__qualname__} cannot be read "
                f"({type(exc).__name__}: {exc})"
            ) from None
        for name in inspect.get_annotations(klass):
            annotation = hints[name]
            if name.startswith("_") or name in base_names or get_origin(annotation) is ClassVar:
                continue
            default = getattr(klass, name, _MISSING)
            try:
                adapter = TypeAdapter(annotation, config=_LENIENT)
            except Exception:
                raise TypeError(
                    f"property {name}: its type {annotation!r} is not one a property can "
                    "have (str, int, float, bool, a list, Literal[...], Secret, optional ones)"
                ) from None
            specs[name] = PropertySpec(
                name=name, annotation=annotation, default=default, adapter=adapter
            )
    return tuple(specs.values())


def coerce_properties(
    handler_class: type[JobCompleteHandler], given: Mapping[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Coerce a registration's properties to the handler's declared types.

    Keys may be snake_case or PascalCase. Strings are coerced as web.config
    values are: ``"587"`` to 587, ``"true"`` to True, ``"a@x,b@y"`` to a list.
    Returns the values by attribute name and a list of (key, problem) pairs.
    """
    specs = property_specs(handler_class)
    by_folded = {normalise_name(spec.name): spec for spec in specs}
    values: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for key, raw in given.items():
        spec = by_folded.get(normalise_name(key))
        if spec is None:
            choices = [s.pascal_name for s in specs] + [s.name for s in specs]
            known = ", ".join(s.pascal_name for s in specs) or "none"
            problems.append(
                (key, f"unknown property{did_you_mean(key, choices)} (this type takes: {known})")
            )
            continue
        if spec.name in seen:
            problems.append((key, f"given twice (also as {seen[spec.name]!r})"))
            continue
        seen[spec.name] = key
        if isinstance(raw, str) and _is_list(spec.annotation):
            raw = [item.strip() for item in raw.replace(";", ",").split(",") if item.strip()]
        try:
            values[spec.name] = spec.adapter.validate_python(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            if error["type"] == "value_error":
                problems.append((key, describe_error(error)))
            else:
                shown = "a value that is not a string" if spec.secret else _shown(raw)
                problems.append((key, f"expected {spec.type_text}, got {shown}"))
    for spec in specs:
        if spec.required and spec.name not in values and spec.name not in seen:
            problems.append((spec.pascal_name, f"is required ({spec.type_text})"))
    return values, problems


def _shown(value: object) -> str:
    """``repr(value)``, cut to :data:`_MAX_SHOWN` characters (a problem line is logged,
    printed and served by ``/readyz``: not a megabyte pasted into the wrong property)."""
    text = repr(value)
    if len(text) <= _MAX_SHOWN:
        return text
    return f"{text[:_MAX_SHOWN]}... ({len(text):,} characters)"


def configured_handler(handler_class: type[H], values: Mapping[str, Any], name: str) -> H:
    """An instance of ``handler_class`` as a registration makes it: the coerced ``values``
    (from :func:`coerce_properties`) set as its properties (a copy of each list, dict or
    set default of those not given), ``name`` set, then ``setup()`` called. Whatever
    ``setup()`` raises propagates; an ``async def setup`` raises ``TypeError``."""
    handler = handler_class()
    for spec in property_specs(handler_class):
        if spec.name not in values and isinstance(spec.default, list | dict | set):
            # A copy of its own: the class's list, appended to by one instance's setup()
            # or run_handler, would grow in every registration of the type, at each reload.
            setattr(handler, spec.name, copy.deepcopy(spec.default))
    for attribute, value in values.items():
        setattr(handler, attribute, value)
    handler.name = name  # type: ignore[misc]
    ready: object = handler.setup()
    if inspect.isawaitable(ready):
        if inspect.iscoroutine(ready):
            ready.close()  # not awaited, and not warned about as never awaited
        raise TypeError(
            "setup() is async: jobhooks calls it without awaiting it, so it would never "
            "run; make it a plain def (run_handler may be async)"
        )
    return handler
