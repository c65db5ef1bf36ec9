"""Read jobhooks.toml into a :class:`JobhooksConfig`, or report every problem in it."""

from __future__ import annotations

import codecs
import difflib
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from jobhooks.config.origin import MAX_KEY_PARTS, ConfigOrigin
from jobhooks.config.schema import HandlerRegistration, JobhooksConfig, UnreadRegistration
from jobhooks.errors import ConfigError

__all__ = ["describe_error", "did_you_mean", "parse_config", "read_config"]

_SECTIONS: dict[str, type[BaseModel]] = {
    name: info.annotation
    for name, info in JobhooksConfig.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
}

_EXPECTED = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "uuid_type": "expected a GUID",
    "uuid_parsing": "expected a GUID",
    "string_too_short": "must not be empty",
}


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``; did you mean 'x'?`` for the closest choice, or an empty string."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not match:
        folded = {choice.casefold().replace("_", ""): choice for choice in choices}
        hit = folded.get(word.casefold().replace("_", ""))
        match = [hit] if hit else []
    return f"; did you mean {match[0]!r}?" if match else ""


def describe_error(error: ErrorDetails, model: type[BaseModel] | None = None) -> str:
    """A short, human description of one pydantic error, with the value it got."""
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        choices = list(model.model_fields) if model else []
        return f"unknown key{did_you_mean(key, choices)}"
    if kind == "missing":
        return "is required"
    message = _EXPECTED.get(kind)
    if message is None:
        message = error["msg"].removeprefix("Value error, ")
        message = message.replace("Input should be", "expected").replace("Input ", "")
        if kind == "literal_error":
            message += f", got {error.get('input')!r}"
        return message
    got = error.get("input")
    return f"{message}, got {got!r}" if got is not None else message


def _label(path: Sequence[str | int], config: Mapping[str, Any]) -> str:
    if path and path[0] == "handlers" and len(path) >= 2 and isinstance(path[1], int):
        handlers = config.get("handlers")
        name = None
        if isinstance(handlers, list) and path[1] < len(handlers):
            entry = handlers[path[1]]
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                name = entry["name"]
        head = f"handlers[{path[1]}]" + (f" {name!r}" if name else "")
        rest = ".".join(str(p) for p in path[2:])
        return f"{head}: {rest}" if rest else head
    if not path:
        return "jobhooks.toml"
    if len(path) == 1:
        return f"[{path[0]}]" if path[0] in _SECTIONS or path[0] == "job_types" else str(path[0])
    return f"[{path[0]}] " + ".".join(str(p) for p in path[1:])


def _model_at(path: Sequence[str | int]) -> type[BaseModel] | None:
    if not path:
        return JobhooksConfig
    if path[0] == "handlers" and len(path) == 2:
        return HandlerRegistration
    if len(path) == 1:
        return _SECTIONS.get(str(path[0]))
    return None


_UNION = ("str", "list[str]")
"""How pydantic tags the two branches of a ``str | list[str]`` field in an error's location."""


def _one_per_union(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """The errors of a ``str | list[str]`` field (``when``, ``job_types``) as one: the list's
    own errors when the value is a list, else "expected a string or a list of strings"."""
    merged: list[ErrorDetails] = []
    said: set[tuple[str | int, ...]] = set()
    for error in errors:
        loc = tuple(error["loc"])
        at = next((i for i, part in enumerate(loc) if part in _UNION), None)
        if at is None:
            merged.append(error)
            continue
        field, branch = loc[:at], loc[at]
        if branch == "str":
            if isinstance(error.get("input"), list):
                continue  # a list: its own errors say what is wrong in it
            if field not in said:
                said.add(field)
                merged.append(
                    {**error, "loc": field, "type": "value_error",
                     "msg": f"expected a string or a list of strings, got {error['input']!r}"}
                )  # fmt: skip
        elif not (error["type"] == "list_type" and field in said):
            merged.append({**error, "loc": (*field, *loc[at + 1 :])})
    return merged


def _problems(
    exc: ValidationError,
    prefix: tuple[str | int, ...],
    data: Mapping[str, Any],
    origin: ConfigOrigin,
) -> list[str]:
    problems = []
    for error in _one_per_union(exc.errors()):
        path = (*prefix, *error["loc"])
        parent = path[:-1] if error["type"] == "extra_forbidden" else path
        message = describe_error(error, _model_at(parent))
        problems.append(f"{_label(path, data)}: {message} {origin.where(path)}")
    return problems


_RULES = ("when", "streak", "repeat_every")


def _unread(index: int, entry: object, exc: ValidationError) -> UnreadRegistration:
    """What can be read of a ``[[handlers]]`` table that did not validate."""
    table = entry if isinstance(entry, dict) else {}
    name = table.get("name")
    job_types = table.get("job_types")
    properties = table.get("properties")
    if job_types is None and isinstance(properties, dict):
        job_types = next(
            (v for k, v in properties.items() if k.replace("_", "").lower() == "jobtypes"), None
        )
    rules: HandlerRegistration | None
    try:
        rules = HandlerRegistration.model_validate(
            {"name": "-", "type": "-", **{key: table[key] for key in _RULES if key in table}}
        )
    except ValidationError:
        rules = None
    return UnreadRegistration(
        index, name if isinstance(name, str) and name else None, job_types,
        table.get("enabled") is not False, rules,
        frozenset(str(error["loc"][0]) for error in exc.errors() if error["loc"]),
    )  # fmt: skip


def parse_config(data: Mapping[str, Any], origin: ConfigOrigin) -> tuple[JobhooksConfig, list[str]]:
    """Validate a parsed TOML document section by section and handler by handler.

    Returns a configuration holding every part that is valid, and the
    problems of the others, so a caller can report all of them at once. A
    ``[[handlers]]`` table with ``enabled = false`` is inert, as a commented-out
    registration: its problems are not reported. Which problems are a
    registration's is kept on the configuration (see
    :attr:`JobhooksConfig.registration_problems`).
    """
    problems: list[str] = []
    handlers: list[HandlerRegistration] = []
    unread: list[UnreadRegistration] = []
    theirs: dict[int, list[str]] = {}
    raw_handlers = data.get("handlers", [])
    if not isinstance(raw_handlers, list):
        problems.append(f"handlers: expected [[handlers]] tables {origin.where(('handlers',))}")
        raw_handlers = []
    for index, entry in enumerate(raw_handlers):
        try:
            registration = HandlerRegistration.model_validate(entry)
        except ValidationError as exc:
            table = _unread(index, entry, exc)
            unread.append(table)
            if table.enabled:
                theirs[index] = _problems(exc, ("handlers", index), data, origin)
                problems.extend(theirs[index])
            continue
        registration._position = index
        handlers.append(registration)
    rest = {key: value for key, value in data.items() if key != "handlers"}
    try:
        config = JobhooksConfig.model_validate(rest)
    except ValidationError as exc:
        problems.extend(_problems(exc, (), data, origin))
        config = JobhooksConfig.model_validate(_valid_parts(rest))
    config = config.model_copy(update={"handlers": handlers})
    config._origin = origin
    named = [
        (position if handler.position is None else handler.position, handler.name)
        for position, handler in enumerate(handlers)
        if handler.enabled
    ] + [(table.index, table.name) for table in unread if table.enabled and table.name]
    names: dict[str, int] = {}
    for index, name in sorted(named):
        if name in names:
            problem = (
                f"handlers[{index}] {name!r}: name: duplicate handler name, already used "
                f"by handlers[{names[name]}] {origin.where(('handlers', index, 'name'))}"
            )
            theirs.setdefault(index, []).append(problem)
            problems.append(problem)
        names.setdefault(name, index)
    config._registration_problems = {index: tuple(found) for index, found in theirs.items()}
    config._unread = tuple(unread)
    return config, problems


def _valid_parts(data: Mapping[str, Any]) -> dict[str, Any]:
    """The sections of ``data`` that validate; of a section with invalid keys, the keys
    that do, so nothing valid looks unset: a [smtp] password that cannot be resolved is one
    problem, not also "[smtp] host is empty" in every email handler."""
    valid: dict[str, Any] = {}
    for key, value in data.items():
        try:
            JobhooksConfig.model_validate({key: value})
        except ValidationError as exc:
            if not isinstance(value, Mapping):
                continue
            bad = {error["loc"][1] for error in exc.errors() if len(error["loc"]) > 1}
            kept = {name: item for name, item in value.items() if name not in bad}
            try:
                JobhooksConfig.model_validate({key: kept})
            except ValidationError:
                continue
            valid[key] = kept
        else:
            valid[key] = value
    return valid


def read_config(path: str | Path) -> tuple[JobhooksConfig, list[str]]:
    """Read and validate a jobhooks.toml; returns the valid parts and every problem.

    Raises :class:`ConfigError` only when the file cannot be read or is not TOML.
    """
    path = Path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file (give --config PATH or create it)"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    text = _decoded(path, content)
    origin = ConfigOrigin.scan(str(path), text)
    if origin.overlong is not None:  # before the TOML reader, which takes minutes on it
        raise ConfigError(
            [
                f"{path.name} line {origin.overlong}: a key or table name has more than "
                f"{MAX_KEY_PARTS} dotted parts; jobhooks.toml needs at most 4"
            ],
            source=str(path),
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path.name}: not valid TOML: {exc}"], source=str(path)) from None
    except ValueError:  # Python's limit on the digits of an integer it converts
        raise ConfigError(
            [f"{path.name}: not valid TOML: a number in it has more digits than can be read"],
            source=str(path),
        ) from None
    except RecursionError:
        raise _nested_too_deeply(path) from None
    try:
        return parse_config(data, origin)
    except RecursionError:
        raise _nested_too_deeply(path) from None


def _nested_too_deeply(path: Path) -> ConfigError:
    return ConfigError(
        [f"{path.name}: arrays or tables are nested too deeply to read"], source=str(path)
    )


_WIDE_MARKS = {
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}


def _decoded(path: Path, content: bytes) -> str:
    """A TOML file's text: UTF-8, with the byte order mark some editors write at its start
    left out. Raises :class:`ConfigError` naming the encoding to save it in."""
    for mark, encoding in _WIDE_MARKS.items():
        if content.startswith(mark):
            raise ConfigError(
                [f"{path.name} is {encoding} text; TOML files are UTF-8: save it as UTF-8"],
                source=str(path),
            )
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [
                f"{path.name}: not UTF-8 text (line {line}: byte 0x{content[exc.start]:02x}); "
                "TOML files are UTF-8: save it as UTF-8"
            ],
            source=str(path),
        ) from None
