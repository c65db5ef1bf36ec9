"""Import handler registrations from Keyfactor Command: web.config (Unity), a fragment of
one (``<register>`` elements as the documentation shows them), or manifest.json.

Each ``<register type="IOrchestratorJobCompleteHandler" mapTo=... name=...>``
block becomes a ``[[handlers]]`` table: the built-in email handler and the
repeated-failure sample map to jobhooks' own types, every property is kept,
each secret becomes an ``env:`` reference of its own (never written in clear),
and what cannot be converted is flagged with a comment saying what to do.
Unity ``<alias>`` names are resolved first, as Unity does.

Every reader raises ValueError, with a message saying what is wrong and where,
for input it cannot read.
"""

from __future__ import annotations

import difflib
import json
import re
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeAlias
from xml.parsers.expat import ErrorString, ExpatError, ParserCreate
from xml.parsers.expat.errors import XML_ERROR_JUNK_AFTER_DOC_ELEMENT, XML_ERROR_NO_ELEMENTS

import tomlkit
from tomlkit.items import Array, InlineTable, Table
from tomlkit.toml_document import TOMLDocument

from jobhooks.config.secret_like import looks_secret
from jobhooks.escapes import escape_controls
from jobhooks.sdk.enums import normalise_name

__all__ = [
    "ImportResult",
    "ImportedHandler",
    "PropertyValue",
    "read_manifest",
    "read_webconfig",
    "to_toml",
]

INTERFACE = "IOrchestratorJobCompleteHandler"
KNOWN_TYPES = {
    "CSS.CMS.Agents.Server.Handlers.SendEmailOrchestratorJobCompleteHandler": "send-email",
    "SendEmailOrchestratorJobCompleteHandler": "send-email",
    "SendEmail_RepeatedFailureHandler": "repeated-failure-email",
}
EMAIL_PROPERTIES = {
    "smtpserver",
    "smtpport",
    "username",
    "password",
    "mailfrom",
    "emailrecipients",
    "retrythreshold",
    "starttls",
    "tls",
    "smtptimeout",
    "subject",
    "body",
}

PropertyValue: TypeAlias = str | list["PropertyValue"] | dict[str, "PropertyValue"]
"""A property as imported: text (web.config values all are), or a manifest's list or object."""


@dataclass
class ImportedHandler:
    """One registration read from the platform's configuration."""

    name: str
    source_type: str
    type: str | None
    job_types: list[str]
    properties: dict[str, PropertyValue]
    flags: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    """Environment variables to set, with where each value came from."""
    commented_out: bool = False
    replaced: bool = False
    """A later registration of the same name replaced it (Unity keeps the last)."""


@dataclass
class ImportResult:
    """The registrations found, and what the reader noticed about the file."""

    handlers: list[ImportedHandler]
    notes: list[str] = field(default_factory=list)

    @property
    def environment(self) -> dict[str, str]:
        """Every environment variable the imported configuration refers to."""
        return {k: v for handler in self.handlers for k, v in handler.environment.items()}


_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""What an environment variable's name may hold (a POSIX shell's rule)."""


class _Variables:
    """The environment variable names given out in one import: each secret gets its own,
    never one the source names itself (``source``: its text)."""

    def __init__(self, source: str) -> None:
        self._taken: set[str] = set(re.findall(r"env:([A-Za-z_][A-Za-z0-9_]*)", source))

    def claim(self, handler: str, path: str) -> str:
        """``JOBHOOKS_<HANDLER>_<PROPERTY>``, with ``_2``, ``_3``... once the name is taken."""
        words = re.sub(r"[^A-Za-z0-9]+", "_", f"{handler}_{path}").strip("_").upper()
        base = f"JOBHOOKS_{words or 'SECRET'}"
        variable, count = base, 1
        while variable in self._taken:
            count += 1
            variable = f"{base}_{count}"
        self._taken.add(variable)
        return variable


def _hide_secrets(
    imported: ImportedHandler, path: str, value: PropertyValue, variables: _Variables
) -> PropertyValue:
    """``value`` with each secret in it replaced by an ``env:`` reference of its own."""
    if isinstance(value, dict):
        return {
            key: _hide_secrets(imported, f"{path}.{key}", item, variables)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _hide_secrets(imported, f"{path}[{index}]", item, variables)
            for index, item in enumerate(value)
        ]
    if isinstance(value, str) and value.startswith("env:") and len(value) > len("env:"):
        named = value.removeprefix("env:")
        if _VARIABLE.fullmatch(named):
            origin = f"{_printable(path)} of {imported.name} (named in the source)"
            imported.environment[named] = origin
        else:
            imported.flags.append(
                f"{_printable(path)} is {_printable(value)!r}, and no environment variable "
                "can have that name (letters, digits and _ only): fix it by hand"
            )
        return value
    if not looks_secret(path, value):
        return value
    variable = variables.claim(imported.name, path)
    imported.environment[variable] = f"{_printable(path)} of {imported.name}"
    return f"env:{variable}"


def _printable(text: str) -> str:
    """``text`` safe in a TOML comment and on a terminal: one line, no character that acts."""
    return escape_controls(text)


def _jobhooks_type(source_type: str) -> str | None:
    class_name = source_type.split(",")[0].strip()
    return KNOWN_TYPES.get(class_name) or KNOWN_TYPES.get(class_name.rsplit(".", 1)[-1])


def _near_known_type(source_type: str) -> str:
    """``did you mean X? Its jobhooks type is 'y': ...`` when the class is spelt nearly as
    a handler jobhooks maps (a typo the platform could not load either), else ``""``."""
    short = source_type.split(",")[0].strip().rsplit(".", 1)[-1]
    names = [name for name in KNOWN_TYPES if "." not in name]
    matches = difflib.get_close_matches(short, names, n=1, cutoff=0.8)
    if not matches:
        return ""
    return (
        f"did you mean {matches[0]}? Its jobhooks type is {KNOWN_TYPES[matches[0]]!r}: put "
        "that in type if so; else "
    )


def _job_types(value: PropertyValue, flags: list[str]) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [guid for item in value for guid in _job_types(item, flags)]
    flags.append("JobTypes holds an object, not job type GUIDs: it was left out")
    return []


def _gather(raw: Iterable[tuple[str, PropertyValue]], imported: ImportedHandler) -> None:
    """Sort ``raw`` into the job types and the properties, flagging a property given twice
    and properties that jobhooks, which folds case and ``_ - space``, reads as one."""
    given: dict[str, int] = {}
    for key, value in raw:
        if normalise_name(key) == "jobtypes":
            imported.job_types.extend(_job_types(value, imported.flags))
            continue
        given[key] = given.get(key, 0) + 1
        imported.properties[key] = value
    for key, count in given.items():
        if count > 1:
            imported.flags.append(f"{key} is given {count} times; the last value was kept")
    folded: dict[str, list[str]] = {}
    for key in imported.properties:
        folded.setdefault(normalise_name(key), []).append(key)
    for keys in folded.values():
        if len(keys) > 1:
            imported.flags.append(
                f"{' and '.join(keys)} are one property to jobhooks (names are read without "
                "regard to case, '_', '-' or spaces): keep one and delete the others"
            )


def _check_email_properties(imported: ImportedHandler) -> None:
    properties = imported.properties
    for key in [k for k in properties if normalise_name(k) not in EMAIL_PROPERTIES]:
        imported.flags.append(f"{key} is not a property of {imported.type}; it was left out")
        properties.pop(key)
    recipients = [k for k in properties if normalise_name(k) == "emailrecipients"]
    if not any(properties[key] for key in recipients):
        imported.flags.append("EmailRecipients is empty: list the addresses to mail")
    # An empty value in web.config means "not set": let [smtp] or the default apply.
    for key in [k for k, v in properties.items() if not v and k not in recipients]:
        properties.pop(key)


def _convert(
    name: str,
    source_type: str,
    raw: Iterable[tuple[str, PropertyValue]],
    variables: _Variables,
    *,
    commented: bool = False,
    flags: Iterable[str] = (),
) -> ImportedHandler:
    printable = _printable(name)
    # A name is part of addresses (no '/') and compared as written (no edge spaces).
    shown = printable.replace("/", "-").strip() or "handler"
    imported = ImportedHandler(shown, source_type, _jobhooks_type(source_type), [], {})
    imported.commented_out = commented
    if printable != name:
        imported.flags.append(
            "the name has control characters, written here as escapes: choose a plain name"
        )
    if shown != printable:
        imported.flags.append(
            f"renamed from {printable!r}: a name may not hold '/' nor begin or end with spaces"
        )
    imported.flags.extend(flags)
    _gather(raw, imported)
    if imported.type is None:
        imported.flags.append(
            f"no jobhooks type for the C# handler {source_type.split(',')[0]!r}: "
            f"{_near_known_type(source_type)}write it as a "
            "Python handler package and put its entry point's name in type"
        )
    elif imported.type in ("send-email", "repeated-failure-email"):
        _check_email_properties(imported)
    imported.properties = {
        key: _hide_secrets(imported, key, value, variables)
        for key, value in imported.properties.items()
    }
    if not imported.job_types:
        imported.flags.append("JobTypes is empty: list the job type GUIDs (or names) it runs for")
    for guid in imported.job_types:
        try:
            uuid.UUID(guid)
        except ValueError:
            imported.flags.append(f"JobTypes has {guid!r}, which is not a GUID")
    imported.flags = [_printable(flag) for flag in imported.flags]
    return imported


def _is(element: ElementTree.Element, local_name: str) -> bool:
    """True when ``element`` is ``local_name`` in any XML namespace (Unity's or none)."""
    return isinstance(element.tag, str) and element.tag.rsplit("}", 1)[-1] == local_name


def _aliases(root: ElementTree.Element) -> dict[str, str]:
    """Unity's type aliases (``<alias>``, and ``<typeAlias>`` of Unity 1.x) anywhere in the
    document: alias -> the type it stands for."""
    return {
        element.get("alias", ""): element.get("type", "")
        for element in root.iter()
        if (_is(element, "alias") or _is(element, "typeAlias"))
        and element.get("alias")
        and element.get("type")
    }


def _resolve(type_name: str, aliases: dict[str, str]) -> str:
    return aliases.get(type_name.strip(), type_name)


def _register_blocks(
    root: ElementTree.Element, aliases: dict[str, str]
) -> list[ElementTree.Element]:
    return [
        element
        for element in root.iter()
        if _is(element, "register")
        and _resolve(element.get("type", ""), aliases).split(",")[0].strip().endswith(INTERFACE)
    ]


def _properties(register: ElementTree.Element) -> list[tuple[str, PropertyValue]]:
    found: list[tuple[str, PropertyValue]] = []
    for child in register:
        name = child.get("name")
        if not _is(child, "property") or not name:
            continue
        value = child.get("value")
        if value is None:
            nested = next((c for c in child if c.get("value") is not None), None)
            value = nested.get("value") if nested is not None else ""
        found.append((name, value or ""))
    return found


_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_NOT_ONE_ROOT = {XML_ERROR_JUNK_AFTER_DOC_ELEMENT, XML_ERROR_NO_ELEMENTS}


class _PrologRead(Exception):
    """Raised at the first element: the document type declaration, if any, is behind."""


def _refuse_entities(text: str) -> None:
    """Refuse a document type declaration that declares entities or names an external DTD,
    before anything expands them: an entity can read a local file or another host (XXE) or
    grow to gigabytes (billion laughs). A web.config has neither.

    Raises ValueError naming the line; syntax errors are left to the parse that follows.
    """
    parser = ParserCreate()

    def doctype(name: str, system_id: str | None, public_id: str | None, _subset: int) -> None:
        if system_id or public_id:
            raise ValueError(
                f"line {parser.CurrentLineNumber}: the <!DOCTYPE {_printable(name)}> refers "
                f"to an external DTD ({_printable(system_id or public_id or '')}), which is "
                "refused: jobhooks never fetches one (a web.config has none); delete the "
                "<!DOCTYPE>"
            )

    def entity(name: str, parameter: bool, *_rest: str | None) -> None:
        raise ValueError(
            f"line {parser.CurrentLineNumber}: the file declares the XML entity "
            f"{'%' if parameter else '&'}{_printable(name)}; in its <!DOCTYPE>, which is "
            "refused: entities can read other files or hosts, or expand to gigabytes (a "
            "web.config has none); delete the <!DOCTYPE> and write the values out"
        )

    def element(*_args: object) -> None:
        raise _PrologRead

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = lambda name, *_rest: entity(name, False)
    parser.StartElementHandler = element
    try:
        parser.Parse(text, True)
    except (_PrologRead, ExpatError):
        return


def _parse(text: str) -> tuple[ElementTree.Element, str]:
    """The XML's root element, and the text it was read from: a fragment without one
    (``<register>`` elements side by side, or only comments, as the documentation shows
    them) is read as if it had one.

    Raises ValueError naming the line of the first syntax error, or of a document type
    declaration with entities or an external DTD (refused, see :func:`_refuse_entities`).
    """
    _refuse_entities(text)
    try:
        return ElementTree.fromstring(text), text
    except ElementTree.ParseError as exc:
        if ErrorString(exc.code) not in _NOT_ONE_ROOT or not text.strip():
            raise ValueError(f"not well-formed XML: {exc}") from None
    # On the first line, so that an error's line number is the file's.
    wrapped = "<fragment>" + _DECLARATION.sub("", text, count=1) + "</fragment>"
    try:
        return ElementTree.fromstring(wrapped), wrapped
    except ElementTree.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None


def _comments(text: str) -> list[tuple[str, int]]:
    """The XML comments of ``text`` (well-formed, see :func:`_parse`), each with its line:
    those the parser reads as comments, not text that looks like one in a CDATA section
    or a processing instruction."""
    found: list[tuple[str, int]] = []
    parser = ParserCreate()

    def comment(data: str) -> None:
        found.append((data, parser.CurrentLineNumber))

    parser.CommentHandler = comment
    parser.Parse(text, True)
    return found


def _commented_blocks(
    text: str, aliases: dict[str, str], result: ImportResult
) -> list[tuple[ElementTree.Element, dict[str, str]]]:
    """The registrations inside XML comments, each with the aliases that apply to it (the
    document's and its comment's); a comment that is not XML is noted, skipped."""
    blocks: list[tuple[ElementTree.Element, dict[str, str]]] = []
    for comment, line in _comments(text):
        if "<register" not in comment:
            continue
        try:
            fragment = ElementTree.fromstring(f"<commented>{comment}</commented>")
        except ElementTree.ParseError as exc:
            where = line + exc.position[0] - 1
            why = str(exc).split(":", 1)[0]
            result.notes.append(
                f"line {where}: the commented-out block that begins on line {line} is not "
                f"well-formed XML ({why}): it was skipped"
            )
            continue
        known = aliases | _aliases(fragment)
        blocks += [(register, known) for register in _register_blocks(fragment, known)]
    return blocks


def read_webconfig(text: str, *, include_commented: bool = False) -> ImportResult:
    """Read every job-complete handler registration in a web.config, or in a fragment
    of one (``<register>`` elements with no root element, as documented).

    Unity aliases (``<alias alias=... type=...>``) are resolved in ``type`` and
    ``mapTo``. With ``include_commented``, registrations inside XML comments (as
    the default web.config ships its built-in handler) are read too, with
    ``commented_out`` set; without it, a note says how many were left.
    Text from bytes should come through :func:`~jobhooks.config.xml_text.decode_source`.
    """
    root, parsed = _parse(text)
    aliases = _aliases(root)
    result = ImportResult([])
    blocks = [(register, aliases, False) for register in _register_blocks(root, aliases)]
    commented = _commented_blocks(parsed, aliases, result)
    if include_commented:
        blocks += [(register, known, True) for register, known in commented]
    elif commented:
        result.notes.append(
            f"{len(commented)} registration(s) inside XML comments were not read; "
            "--include-commented imports them too (as enabled = false)"
        )
    variables = _Variables(text)
    for register, known, hidden in blocks:
        source_type = _resolve(register.get("mapTo", ""), known)
        name = register.get("name") or source_type.split(",")[0].rsplit(".", 1)[-1] or "handler"
        properties = _properties(register)
        result.handlers.append(_convert(name, source_type, properties, variables, commented=hidden))
    _disable_replaced(result.handlers)
    if not result.handlers and not commented:
        result.notes.append(f'no <register type="{INTERFACE}"> block was found')
    return result


def _disable_replaced(handlers: list[ImportedHandler]) -> None:
    """Disable, flagged, each active registration that a later one of the same name
    replaces: Unity keeps the last registration of a name, so the platform never ran it."""
    last: dict[str, ImportedHandler] = {}
    for handler in handlers:
        if not handler.commented_out:
            last[handler.name] = handler
    for handler in handlers:
        if not handler.commented_out and last[handler.name] is not handler:
            handler.replaced = True
            handler.flags.append(
                f"a later registration named {handler.name!r} replaces this one (Unity keeps "
                "the last of a name, so the platform never ran it): enabled = false; delete "
                "it, or give it a name of its own to run both"
            )


_MAX_DEPTH = 10


class _TooDeep(Exception):
    """Raised inside the manifest reader for an option nested more than _MAX_DEPTH deep."""


def _kind(value: object) -> str:
    """What a JSON value is, in words."""
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true or false"}
    return "null" if value is None else kinds.get(type(value), "a number")


def _option(value: object, depth: int = 1) -> PropertyValue:
    """A manifest option as a property: a scalar as text (as web.config gives it), a list
    or an object kept as one."""
    if isinstance(value, dict | list) and depth > _MAX_DEPTH:
        raise _TooDeep
    if isinstance(value, dict):
        return {str(key): _option(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_option(item, depth + 1) for item in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _manifest_handler(
    name: str, entry: dict[str, object], variables: _Variables
) -> ImportedHandler:
    source_type = str(entry.get("TypeFullName", ""))
    options = entry.get("Options")
    raw: list[tuple[str, PropertyValue]] = []
    flags: list[str] = []
    if isinstance(options, dict):
        for key, value in options.items():
            try:
                raw.append((key, _option(value)))
            except _TooDeep:
                flags.append(
                    f"{key} nests objects or lists more than {_MAX_DEPTH} deep: "
                    "it was left out; write it by hand"
                )
    elif options is not None:
        flags.append(
            f"Options is {_kind(options)}, expected an object of property names and values: "
            "it was left out"
        )
    label = name or source_type.rsplit(".", 1)[-1] or "handler"
    return _convert(label, source_type, raw, variables, flags=flags)


class _DuplicateKey(ValueError):
    """Raised inside the manifest reader for a name given twice in one object."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    data: dict[str, object] = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateKey(
                f'"{_printable(key)}" is given twice in one object: keep one (the platform '
                "refuses such a manifest too)"
            )
        data[key] = value
    return data


def _load_json(text: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey:
        raise
    except RecursionError:
        raise ValueError("cannot read the JSON: its arrays or objects nest too deeply") from None
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None


def read_manifest(text: str) -> ImportResult:
    """Read the job-complete handlers of an extension ``manifest.json``.

    Raises ValueError when the text is not JSON, or not an object whose
    ``extensions`` is an object; an entry of another shape is noted and skipped.
    Text from bytes should come through :func:`~jobhooks.config.xml_text.decode_source`.
    """
    data = _load_json(text)
    if not isinstance(data, dict):
        raise ValueError(
            f"not an extension manifest: the file holds {_kind(data)}, expected an object "
            'with "extensions"'
        )
    extensions = data.get("extensions", {})
    if not isinstance(extensions, dict):
        raise ValueError(
            f'not an extension manifest: "extensions" is {_kind(extensions)}, expected an '
            "object of interface names"
        )
    result = ImportResult([])
    variables = _Variables(text)
    for interface, entries in extensions.items():
        where = f"extensions.{interface}"
        if not interface.endswith(INTERFACE):
            continue
        if not isinstance(entries, dict):
            result.notes.append(
                f"{where} is {_kind(entries)}, expected an object of named extensions: "
                "it was skipped"
            )
            continue
        named = {"": entries} if "TypeFullName" in entries else entries
        for name, entry in named.items():
            if isinstance(entry, dict):
                result.handlers.append(_manifest_handler(name, entry, variables))
                continue
            result.notes.append(
                f"{where}.{name} is {_kind(entry)}, expected an object with TypeFullName "
                "and Options: it was skipped"
            )
    if not result.handlers:
        result.notes.append(f"no extensions of {INTERFACE} were found")
    result.notes = [_printable(note) for note in result.notes]
    return result


def _comment_lines(container: Table | TOMLDocument, lines: Iterable[str]) -> None:
    for line in lines:
        container.add(tomlkit.comment(_printable(line)))


def _toml_value(value: PropertyValue) -> str | Array | InlineTable:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        array = tomlkit.array()
        array.extend(_toml_value(item) for item in value)
        return array
    table = tomlkit.inline_table()
    for key, item in value.items():
        table.append(key, _toml_value(item))
    return table


def _handler_table(imported: ImportedHandler) -> Table:
    table = tomlkit.table()
    notes = [f"from {imported.source_type or 'an unnamed type'}"]
    if imported.commented_out:
        notes.append("this registration was commented out in the file: enabled = false")
    _comment_lines(table, notes + [f"FLAG: {flag}" for flag in imported.flags])
    table.add("name", imported.name)
    table.add("type", imported.type or "")
    table.add("job_types", imported.job_types)
    if imported.commented_out or imported.replaced:
        table.add("enabled", False)
    if imported.properties:
        properties = tomlkit.table()
        for key, value in imported.properties.items():
            properties.add(key, _toml_value(value))
        table.add("properties", properties)
    return table


def to_toml(result: ImportResult) -> str:
    """The registrations as jobhooks.toml text, each flagged part with a FLAG comment, and
    the environment variables to set listed at the top."""
    document = tomlkit.document()
    _comment_lines(
        document,
        [
            "Imported from the platform's handler registrations.",
            "Parts marked FLAG need your attention before 'jobhooks validate'.",
            *(f"Note: {note}" for note in result.notes),
        ],
    )
    if result.environment:
        _comment_lines(
            document,
            [
                "Set these environment variables (values from the old file):",
                *(f"  {variable}  <- {origin}" for variable, origin in result.environment.items()),
            ],
        )
    needs_smtp = any(
        h.type == "send-email" and not any(normalise_name(k) == "smtpserver" for k in h.properties)
        for h in result.handlers
    )
    if needs_smtp:
        smtp = tomlkit.table()
        _comment_lines(
            smtp,
            [
                "FLAG: the platform's built-in email handler used the platform's SMTP settings;",
                'give them here (host, port, mail_from, username/password; tls = "auto" if unset).',
            ],
        )
        smtp.add("host", "")
        smtp.add("mail_from", "")
        document.add("smtp", smtp)
    if not result.handlers:
        # An empty array of tables would be written above the comments.
        document.add("handlers", tomlkit.array())
        return tomlkit.dumps(document)
    handlers = tomlkit.aot()
    for imported in result.handlers:
        handlers.append(_handler_table(imported))
    document.add("handlers", handlers)
    return tomlkit.dumps(document)
