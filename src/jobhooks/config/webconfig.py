"""Import handler registrations from Keyfactor Command: web.config (Unity), a fragment of
one (``<register>`` elements as the documentation shows them), or manifest.json.

Each ``<register type="IOrchestratorJobCompleteHandler" mapTo=... name=...>``
block becomes a ``[[handlers]]`` table: the built-in email handler and the
repeated-failure sample map to jobhooks' own types, every property is kept,
each password becomes an ``env:`` reference (never written in clear), and
what cannot be converted is flagged with a comment saying what to do.
"""

from __future__ import annotations

import json
import re
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Any
from xml.parsers.expat import ErrorString
from xml.parsers.expat.errors import XML_ERROR_JUNK_AFTER_DOC_ELEMENT, XML_ERROR_NO_ELEMENTS

import tomlkit

from jobhooks.sdk.enums import normalise_name

__all__ = ["ImportResult", "ImportedHandler", "read_manifest", "read_webconfig", "to_toml"]

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
_SECRET_NAME = re.compile(r"password|secret|token|apikey|api_key|credential|authheader", re.I)


@dataclass
class ImportedHandler:
    """One registration read from the platform's configuration."""

    name: str
    source_type: str
    type: str | None
    job_types: list[str]
    properties: dict[str, str]
    flags: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    """Environment variables to set, with where each value came from."""
    commented_out: bool = False


@dataclass
class ImportResult:
    """The registrations found, and what the reader noticed about the file."""

    handlers: list[ImportedHandler]
    notes: list[str] = field(default_factory=list)

    @property
    def environment(self) -> dict[str, str]:
        """Every environment variable the imported configuration refers to."""
        return {k: v for handler in self.handlers for k, v in handler.environment.items()}


def _jobhooks_type(source_type: str) -> str | None:
    class_name = source_type.split(",")[0].strip()
    return KNOWN_TYPES.get(class_name) or KNOWN_TYPES.get(class_name.rsplit(".", 1)[-1])


def _variable(handler: str, prop: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", f"{handler}_{prop}").strip("_").upper()
    return f"JOBHOOKS_{words}"


def _convert(name: str, source_type: str, raw: dict[str, str], commented: bool) -> ImportedHandler:
    type_name = _jobhooks_type(source_type)
    properties: dict[str, str] = {}
    job_types: list[str] = []
    imported = ImportedHandler(name, source_type, type_name, job_types, properties)
    imported.commented_out = commented
    for key, value in raw.items():
        if normalise_name(key) == "jobtypes":
            job_types.extend(part.strip() for part in value.split(",") if part.strip())
            continue
        if _SECRET_NAME.search(key) and value and not value.startswith(("env:", "file:")):
            variable = _variable(name, key)
            imported.environment[variable] = f"{key} of {name}"
            value = f"env:{variable}"
        properties[key] = value
    if type_name is None:
        imported.flags.append(
            f"no jobhooks type for the C# handler {source_type.split(',')[0]!r}: write it as a "
            "Python handler package and put its entry point's name in type"
        )
    elif type_name in ("send-email", "repeated-failure-email"):
        unknown = [key for key in properties if normalise_name(key) not in EMAIL_PROPERTIES]
        for key in unknown:
            imported.flags.append(f"{key} is not a property of {type_name}; it was left out")
            properties.pop(key)
        recipients = [k for k in properties if normalise_name(k) == "emailrecipients"]
        if not any(properties[key] for key in recipients):
            imported.flags.append("EmailRecipients is empty: list the addresses to mail")
        # An empty value in web.config means "not set": let [smtp] or the default apply.
        for key in [k for k, v in properties.items() if not v and k not in recipients]:
            properties.pop(key)
    if not job_types:
        imported.flags.append("JobTypes is empty: list the job type GUIDs (or names) it runs for")
    for guid in job_types:
        try:
            uuid.UUID(guid)
        except ValueError:
            imported.flags.append(f"JobTypes has {guid!r}, which is not a GUID")
    return imported


def _register_blocks(root: ElementTree.Element) -> list[ElementTree.Element]:
    return [
        element
        for element in root.iter()
        if isinstance(element.tag, str)
        and element.tag.rsplit("}", 1)[-1] == "register"
        and element.get("type", "").split(",")[0].strip().endswith(INTERFACE)
    ]


def _properties(register: ElementTree.Element) -> dict[str, str]:
    found: dict[str, str] = {}
    for child in register:
        if not isinstance(child.tag, str) or child.tag.rsplit("}", 1)[-1] != "property":
            continue
        name = child.get("name")
        if not name:
            continue
        value = child.get("value")
        if value is None:
            nested = next((c for c in child if c.get("value") is not None), None)
            value = nested.get("value") if nested is not None else ""
        found[name] = value or ""
    return found


_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_NOT_ONE_ROOT = {XML_ERROR_JUNK_AFTER_DOC_ELEMENT, XML_ERROR_NO_ELEMENTS}


def _parse(text: str) -> ElementTree.Element:
    """The XML's root element; a fragment without one (``<register>`` elements side by
    side, or only comments, as the documentation shows them) is read as if it had one.

    Raises ValueError naming the line of the first syntax error.
    """
    try:
        return ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        if ErrorString(exc.code) not in _NOT_ONE_ROOT or not text.strip():
            raise ValueError(f"not well-formed XML: {exc}") from None
    # On the first line, so that an error's line number is the file's.
    wrapped = "<fragment>" + _DECLARATION.sub("", text, count=1) + "</fragment>"
    try:
        return ElementTree.fromstring(wrapped)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None


def _commented_blocks(text: str, result: ImportResult) -> list[ElementTree.Element]:
    """The registrations inside XML comments; a comment that is not XML is noted, skipped."""
    blocks: list[ElementTree.Element] = []
    for comment in re.findall(r"<!--(.*?)-->", text, flags=re.S):
        if "<register" not in comment:
            continue
        try:
            fragment = ElementTree.fromstring(f"<commented>{comment}</commented>")
        except ElementTree.ParseError:
            result.notes.append("a commented-out block that is not well-formed XML was skipped")
            continue
        blocks += _register_blocks(fragment)
    return blocks


def read_webconfig(text: str, *, include_commented: bool = False) -> ImportResult:
    """Read every job-complete handler registration in a web.config, or in a fragment
    of one (``<register>`` elements with no root element, as documented).

    With ``include_commented``, registrations inside XML comments (as the
    default web.config ships its built-in handler) are read too, with
    ``commented_out`` set; without it, a note says how many were left.
    """
    root = _parse(text)
    result = ImportResult([])
    blocks = [(register, False) for register in _register_blocks(root)]
    commented = _commented_blocks(text, result)
    if include_commented:
        blocks += [(register, True) for register in commented]
    elif commented:
        result.notes.append(
            f"{len(commented)} registration(s) inside XML comments were not read; "
            "--include-commented imports them too (as enabled = false)"
        )
    for register, hidden in blocks:
        source_type = register.get("mapTo", "")
        name = register.get("name") or source_type.split(",")[0].rsplit(".", 1)[-1] or "handler"
        result.handlers.append(_convert(name, source_type, _properties(register), hidden))
    if not result.handlers and not commented:
        result.notes.append(f'no <register type="{INTERFACE}"> block was found')
    return result


def read_manifest(text: str) -> ImportResult:
    """Read the job-complete handlers of an extension ``manifest.json``."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    extensions = data.get("extensions", {}) if isinstance(data, dict) else {}
    result = ImportResult([])
    for interface, entries in extensions.items():
        if not str(interface).endswith(INTERFACE) or not isinstance(entries, dict):
            continue
        named = {"": entries} if "TypeFullName" in entries else entries
        for name, entry in named.items():
            if not isinstance(entry, dict):
                continue
            source_type = str(entry.get("TypeFullName", ""))
            options = entry.get("Options") or {}
            raw = {str(k): "" if v is None else str(v) for k, v in options.items()}
            label = name or source_type.rsplit(".", 1)[-1] or "handler"
            result.handlers.append(_convert(label, source_type, raw, False))
    if not result.handlers:
        result.notes.append(f"no extensions of {INTERFACE} were found")
    return result


def _comment_lines(table: Any, lines: list[str]) -> None:
    for line in lines:
        table.add(tomlkit.comment(line))


def to_toml(result: ImportResult) -> str:
    """The registrations as jobhooks.toml text, each flagged part with a FLAG comment."""
    document = tomlkit.document()
    document.add(tomlkit.comment("Imported from the platform's handler registrations."))
    document.add(
        tomlkit.comment("Parts marked FLAG need your attention before 'jobhooks validate'.")
    )
    if result.environment:
        document.add(tomlkit.comment("Set these environment variables (values from the old file):"))
        for variable, origin in result.environment.items():
            document.add(tomlkit.comment(f"  {variable}  <- {origin}"))
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
    handlers = tomlkit.aot()
    for imported in result.handlers:
        table = tomlkit.table()
        notes = [f"from {imported.source_type or 'an unnamed type'}"]
        if imported.commented_out:
            notes.append("this registration was commented out in the file: enabled = false")
        _comment_lines(table, notes + [f"FLAG: {flag}" for flag in imported.flags])
        table.add("name", imported.name)
        table.add("type", imported.type or "")
        table.add("job_types", imported.job_types)
        if imported.commented_out:
            table.add("enabled", False)
        if imported.properties:
            properties = tomlkit.table()
            for key, value in imported.properties.items():
                properties.add(key, value)
            table.add("properties", properties)
        handlers.append(table)
    document.add("handlers", handlers)
    return tomlkit.dumps(document)
