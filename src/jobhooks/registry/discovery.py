"""Find handler types: entry points in the ``jobhooks.handlers`` group, or ``module:Class``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points

from jobhooks.config.load import did_you_mean
from jobhooks.registry.properties import property_specs
from jobhooks.sdk.handler import JobCompleteHandler

__all__ = ["ENTRY_POINT_GROUP", "HandlerTypeError", "installed_types", "load_handler_type"]

ENTRY_POINT_GROUP = "jobhooks.handlers"


class HandlerTypeError(LookupError):
    """A registration's ``type`` names no usable handler class."""


def installed_types() -> dict[str, EntryPoint]:
    """Every handler type installed in this environment, by entry-point name."""
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry)
    return dict(sorted(found.items()))


def _not_found(type_ref: str, module_name: str, missing: str | None) -> str:
    """Why ``module_name`` cannot be imported, and how to make it importable."""
    itself = missing is None or module_name == missing or module_name.startswith(missing + ".")
    if not itself:
        return (
            f"module {module_name!r} (for type {type_ref!r}) imports {missing!r}, which is not "
            f"installed: pip install the package that provides it into this environment "
            f"({sys.prefix})"
        )
    return (
        f"no module named {module_name!r} (for type {type_ref!r}). The module must be "
        "importable by the jobhooks process: a file beside jobhooks.toml is not found by itself. "
        "Install its package into this environment (pip install ./your-package, or pip install "
        f"-e ./your-package while you work on it; environment {sys.prefix}), or add the folder "
        "that holds it to PYTHONPATH (PYTHONPATH=/path/to/folder jobhooks serve ...)"
    )


def load_handler_type(
    type_ref: str, installed: Mapping[str, EntryPoint] | None = None
) -> type[JobCompleteHandler]:
    """Load the class a registration's ``type`` names; ``installed`` is what
    :func:`installed_types` returned, when a caller loading many types has it already
    (reading the environment's entry points takes a while: once per load, not per type).

    Raises :class:`HandlerTypeError` with a message that lists what is installed.
    """
    if ":" in type_ref:
        module_name, _, attribute = type_ref.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise HandlerTypeError(_not_found(type_ref, module_name, exc.name)) from None
        except ImportError as exc:
            raise HandlerTypeError(
                f"cannot import module {module_name!r} for type {type_ref!r}: {exc}"
            ) from None
        except KeyboardInterrupt:
            raise  # Ctrl-C as the node starts: it stops, as it would anywhere else
        except BaseException as exc:  # sys.exit() at import refuses the registration, no more
            raise HandlerTypeError(
                f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
            ) from None
        found = module
        for part in attribute.split("."):
            found = getattr(found, part, None)  # type: ignore[assignment]
            if found is None:
                raise HandlerTypeError(f"module {module_name!r} has no attribute {attribute!r}")
        handler_class: object = found
    else:
        types = installed_types() if installed is None else installed
        entry = types.get(type_ref)
        if entry is None:
            listed = ", ".join(types) or "none"
            hint = did_you_mean(type_ref, list(types))
            raise HandlerTypeError(
                f"unknown handler type {type_ref!r}{hint} (installed types: {listed}; "
                "or give 'package.module:Class')"
            )
        try:
            handler_class = entry.load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            raise HandlerTypeError(
                f"handler type {type_ref!r} ({entry.value}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    if not (isinstance(handler_class, type) and issubclass(handler_class, JobCompleteHandler)):
        raise HandlerTypeError(f"{type_ref!r} is not a subclass of jobhooks.JobCompleteHandler")
    try:
        property_specs(handler_class)
    except TypeError as exc:
        raise HandlerTypeError(f"{type_ref!r} cannot be used: {exc}") from None
    return handler_class
