"""Turn a validated configuration into a :class:`Registry`, collecting every problem."""

from __future__ import annotations

import difflib
import pickle
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path

from jobhooks.config.defaults import default_config
from jobhooks.config.load import did_you_mean, read_config
from jobhooks.config.origin import KeyPath
from jobhooks.config.schema import (
    DEFAULT_GROUP_MAX,
    DEFAULT_GROUP_WAIT,
    HandlerRegistration,
    JobhooksConfig,
    SmtpSettings,
    UnreadRegistration,
)
from jobhooks.errors import ConfigError
from jobhooks.registry.discovery import HandlerTypeError, installed_types, load_handler_type
from jobhooks.registry.matching import (
    DeliveryPolicy,
    Grouping,
    RegisteredHandler,
    RegistrationProblem,
    Registry,
    WhenRules,
)
from jobhooks.registry.placing import place_setup_problems
from jobhooks.registry.properties import coerce_properties, configured_handler
from jobhooks.sdk.enums import normalise_name
from jobhooks.sdk.handler import JobCompleteHandler

__all__ = ["LoadedConfig", "build_registry", "load", "load_for_serving"]

_GUID_LIKE = re.compile(r"^[{(]?[0-9A-Fa-f]{4,}(-[0-9A-Fa-f]*){2,}[})]?$|^[0-9A-Fa-f]{24,}$")


@dataclass(frozen=True)
class LoadedConfig:
    """A configuration and the registry built from it."""

    config: JobhooksConfig
    registry: Registry


def _resolve_job_types(
    raw: object, catalog: Mapping[str, uuid.UUID]
) -> tuple[tuple[uuid.UUID, ...] | None, tuple[str, ...], list[str]]:
    if raw is None:
        return (
            (),
            (),
            ['job_types is required: a list of job type GUIDs or names, or "*" for every job type'],
        )
    if isinstance(raw, str):
        entries: list[object] = [part.strip() for part in raw.split(",")]
    elif isinstance(raw, list | tuple):
        entries = list(raw)
    else:
        return (), (), [f"job_types: expected a list of GUIDs or names, got {raw!r}"]
    if isinstance(raw, str) and not raw.strip():
        entries = []
    if not entries:
        return (
            (),
            (),
            [
                "job_types is empty; it would run for nothing. List job type GUIDs or names, "
                'or use "*" for every job type'
            ],
        )
    if "*" in entries:
        if len(entries) > 1:
            return (), (), ['job_types: "*" means every job type; list nothing beside it']
        return None, ("*",), []
    folded = {normalise_name(name): (name, guid) for name, guid in catalog.items()}
    names = {guid: name for name, guid in catalog.items()}
    ids: dict[uuid.UUID, None] = {}
    labels: list[str] = []
    problems: list[str] = []
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            problems.append(f"job_types: expected GUIDs or names, got {entry!r}")
            continue
        try:
            guid = uuid.UUID(entry)
        except ValueError:
            pass
        else:
            ids[guid] = None
            labels.append(f"{names[guid]} ({guid})" if guid in names else str(guid))
            continue
        if _GUID_LIKE.match(entry):
            problems.append(f"job_types: {entry!r} is not a valid GUID")
            continue
        known = folded.get(normalise_name(entry))
        if known is None:
            hint = _near_matches(entry, list(catalog))
            advice = (
                " (name it in [job_types], run 'jobhooks job-types sync' to read the platform's "
                "job types, or 'jobhooks job-types' to list the ones known; a name reports "
                "gave with several GUIDs is not resolved: give the GUID)"
            )
            problems.append(f"job_types: unknown job type name {entry!r}{hint}{advice}")
            continue
        ids[known[1]] = None
        labels.append(f"{known[0]} ({known[1]})")
    return tuple(ids), tuple(labels), problems


def _near_matches(entry: str, names: list[str]) -> str:
    """``; did you mean 'A'? other near matches: 'B', 'C'`` (any spelling), or ``""``."""
    folded: dict[str, str] = {}
    for name in names:
        folded.setdefault(normalise_name(name), name)
    matches = difflib.get_close_matches(normalise_name(entry), list(folded), n=4, cutoff=0.6)
    if not matches:
        return did_you_mean(entry, names)
    found = [folded[match] for match in matches]
    others = f" other near matches: {', '.join(map(repr, found[1:]))}" if found[1:] else ""
    return f"; did you mean {found[0]!r}?{others}"


_SMTP_PROPERTIES = {
    "host": "smtp_server",
    "port": "smtp_port",
    "username": "username",
    "password": "password",
    "mail_from": "mail_from",
    "ca_bundle": "ca_bundle",
    "timeout": "smtp_timeout",
}
_TLS_PROPERTIES = {normalise_name("tls"), normalise_name("starttls")}
"""A handler's ``Tls`` or older ``Starttls`` both choose its TLS mode: either one
keeps ``[smtp]``'s mode out."""


_CREDENTIALS = {"username", "password"}
"""``[smtp]`` settings that belong to its host: a handler naming another server never
gets them (its relay would be sent another relay's login)."""


def _smtp_supplied(properties: Mapping[str, object], smtp: SmtpSettings) -> dict[str, str]:
    """The properties ``[smtp]`` supplies to an email handler's ``properties``
    (property -> ``[smtp]`` setting): those it leaves out, but for the login when its
    own ``SmtpServer`` is another host than ``[smtp] host``."""
    given = {normalise_name(key): value for key, value in properties.items()}
    server = given.get("smtpserver")
    own = server.strip().lower() if isinstance(server, str) else ""
    host = (smtp.host or "").strip().lower()
    elsewhere = bool(own and host and own != host)
    return {
        prop: setting
        for setting, prop in _SMTP_PROPERTIES.items()
        if normalise_name(prop) not in given and not (elsewhere and setting in _CREDENTIALS)
    }


def _with_smtp_defaults(properties: dict[str, object], smtp: SmtpSettings) -> dict[str, object]:
    given = {normalise_name(key) for key in properties}
    merged = dict(properties)
    for prop, setting in _smtp_supplied(properties, smtp).items():
        value = getattr(smtp, setting)
        if value is not None:
            merged[prop] = value
    if smtp.tls_mode is not None and not given & _TLS_PROPERTIES:
        merged["tls"] = smtp.tls_mode
    return merged


@dataclass(frozen=True)
class _Built:
    """One registration built: its handler when valid, else its problems and what could be
    read of its job types."""

    registered: RegisteredHandler | None
    problems: list[str]
    job_types: tuple[uuid.UUID, ...] | None
    job_types_read: bool


def _register(
    index: int,
    registration: HandlerRegistration,
    config: JobhooksConfig,
    catalog: Mapping[str, uuid.UUID],
    installed: Mapping[str, EntryPoint] | None = None,
) -> _Built:
    where: Callable[[KeyPath], str] = config.origin.where
    label = f"handlers[{index}] {registration.name!r}"
    problems: list[str] = []
    properties = dict(registration.properties)
    job_types_raw: object = registration.job_types
    inline = [key for key in properties if normalise_name(key) == "jobtypes"]
    for key in inline:
        value = properties.pop(key)
        if job_types_raw is not None:
            problems.append(
                f"{label}: properties.{key}: job types given twice (job_types and {key}) "
                f"{where(('handlers', index, 'properties', key))}"
            )
        job_types_raw = value
    job_type_ids, labels, job_problems = _resolve_job_types(job_types_raw, catalog)
    job_path: KeyPath = ("handlers", index, "job_types")
    problems += [f"{label}: {problem} {where(job_path)}" for problem in job_problems]
    read = not problems

    def failed(found: list[str]) -> _Built:
        return _Built(None, found, job_type_ids, read)

    try:
        handler_class = load_handler_type(registration.type, installed)
    except HandlerTypeError as exc:
        problems.append(f"{label}: type: {exc} {where(('handlers', index, 'type'))}")
        return failed(problems)
    given = {normalise_name(key): key for key in properties}
    from_smtp: dict[str, str] = {}
    if getattr(handler_class, "smtp_defaults", False):
        from_smtp = {
            normalise_name(prop): setting
            for prop, setting in _smtp_supplied(properties, config.smtp).items()
        }
        properties = _with_smtp_defaults(properties, config.smtp)
    values, property_problems = coerce_properties(handler_class, properties)
    for key, problem in property_problems:
        path: KeyPath = ("handlers", index, "properties", key)
        problems.append(f"{label}: property {key}: {problem} {where(path)}")
    if property_problems:
        return failed(problems)
    # Its own checks run even when its job types are wrong: every problem in one pass.
    try:
        handler = configured_handler(handler_class, values, registration.name)
    except KeyboardInterrupt:
        raise  # Ctrl-C as the node starts: it stops, as it would anywhere else
    except BaseException as exc:  # sys.exit() in setup() refuses the registration, no more
        smtp_given = set(config.smtp.model_fields_set)
        problems += place_setup_problems(
            exc,
            index=index,
            label=label,
            given=given,
            from_smtp=from_smtp,
            smtp_given=smtp_given,
            where=where,
        )
        return failed(problems)
    if registration.isolation == "process":
        problems += _sendable(handler, label, where(("handlers", index, "isolation")))
    if problems:
        return failed(problems)
    registered = RegisteredHandler(
        name=registration.name,
        type_name=registration.type,
        handler=handler,
        job_types=job_type_ids,
        policy=_policy(registration),
        job_type_labels=labels,
        when=_when(registration),
        grouping=None
        if registration.group_by is None
        else Grouping(
            tuple(registration.group_by),
            registration.group_wait or DEFAULT_GROUP_WAIT,
            registration.group_max or DEFAULT_GROUP_MAX,
        ),
    )
    return _Built(registered, [], job_type_ids, True)


def _sendable(handler: JobCompleteHandler, label: str, at: str) -> list[str]:
    """Problems with sending ``handler`` to a child process (``isolation = "process"``)."""
    try:
        pickle.dumps(handler)
    except Exception as exc:
        return [
            f'{label}: isolation = "process" sends the handler to a child process, but it '
            f"cannot be sent ({type(exc).__name__}: {exc}); keep what setup() makes picklable "
            f'or use isolation = "none" {at}'
        ]
    return []


def _policy(registration: HandlerRegistration) -> DeliveryPolicy:
    return DeliveryPolicy(
        timeout=registration.timeout,
        max_attempts=registration.max_attempts,
        backoff=registration.backoff,
        isolation=registration.isolation,
    )


def _when(registration: HandlerRegistration) -> WhenRules:
    return WhenRules(registration.triggers, registration.streak, registration.repeat_every)


class _Builder:
    """Registrations in, a registry out, in file order: the valid ones run; one with
    problems keeps its ``previous`` version when it had one, and is quarantined otherwise."""

    def __init__(self, previous: Registry | None) -> None:
        self.previous = previous
        self.handlers: list[tuple[int, RegisteredHandler]] = []
        self.problems: list[tuple[int, RegistrationProblem]] = []

    def add(self, index: int, registered: RegisteredHandler) -> None:
        self.handlers.append((index, registered))

    def broken(self, index: int, name: str | None, quarantine: RegistrationProblem) -> None:
        kept = self.previous.get(name) if self.previous is not None and name else None
        if kept is not None and all(h.name != name for _i, h in self.handlers):
            self.handlers.append((index, kept))
            entry = RegistrationProblem(kept.name, quarantine.problems, kept=True)
            self.problems.append((index, entry))
            return
        self.problems.append((index, quarantine))

    def registry(self) -> Registry:
        def order(item: tuple[int, object]) -> int:
            return item[0]

        return Registry(
            [h for _i, h in sorted(self.handlers, key=order)],
            [p for _i, p in sorted(self.problems, key=order)],
        )


def build_registry(
    config: JobhooksConfig,
    catalog: Mapping[str, uuid.UUID] | None = None,
    previous: Registry | None = None,
) -> tuple[Registry, list[str]]:
    """Load, configure and index every enabled handler of a configuration.

    ``catalog`` adds job type names (for example those seen or synced) to the
    ``[job_types]`` table. Returns the registry and the problems found here
    (those the reading of the file found are the configuration's, see
    :attr:`JobhooksConfig.registration_problems`). The registry runs the valid
    registrations; each with problems is in its ``problems``: kept at its
    version in ``previous`` when it has one there (a reload), quarantined
    otherwise. A registration with ``enabled = false`` is inert: not built, never
    a problem.
    """
    names = {**(catalog or {}), **config.job_types}
    builder = _Builder(previous)
    # Read once for the whole file: per registration, a reload of many took seconds.
    installed = installed_types() if any(":" not in h.type for h in config.handlers) else {}
    problems: list[str] = []
    for position, registration in enumerate(config.handlers):
        if not registration.enabled:
            continue
        index = position if registration.position is None else registration.position
        built = _register(index, registration, config, names, installed)
        problems += built.problems
        duplicate = config.registration_problems.get(index)
        if duplicate:  # the first registration of that name runs; this one cannot
            found = (*duplicate, *built.problems)
            builder.problems.append((index, RegistrationProblem(registration.name, found)))
            continue
        if built.registered is not None:
            builder.add(index, built.registered)
            continue
        quarantine = RegistrationProblem(
            registration.name,
            tuple(built.problems),
            job_types=built.job_types,
            holds=built.job_types_read,
            policy=_policy(registration),
            when=_when(registration),
        )
        builder.broken(index, registration.name, quarantine)
    for unread in config.unread_registrations:
        if unread.enabled:
            quarantine, its_problems = _unread_quarantine(unread, config, names)
            problems += its_problems
            builder.broken(unread.index, unread.name, quarantine)
    return builder.registry(), problems


def _unread_quarantine(
    unread: UnreadRegistration, config: JobhooksConfig, names: Mapping[str, uuid.UUID]
) -> tuple[RegistrationProblem, list[str]]:
    """The quarantine of a table that did not validate (its completions are held when its
    name, job types and rules could still be read), and the problems of its job types,
    found here so that one pass says them beside the table's others."""
    job_types, _labels, job_problems = _resolve_job_types(unread.job_types, names)
    label = f"handlers[{unread.index}]" + (f" {unread.name!r}" if unread.name else "")
    found = []
    if "job_types" not in unread.refused:
        where = config.origin.where(("handlers", unread.index, "job_types"))
        found = [f"{label}: {problem} {where}" for problem in job_problems]
    rules = unread.rules
    quarantine = RegistrationProblem(
        unread.name or f"handlers[{unread.index}]",
        (*config.registration_problems.get(unread.index, ()), *found),
        job_types=job_types,
        holds=unread.name is not None and rules is not None and not job_problems,
        when=_when(rules) if rules is not None else WhenRules(),
    )
    return quarantine, found


def load(path: str | Path, catalog: Mapping[str, uuid.UUID] | None = None) -> LoadedConfig:
    """Read a jobhooks.toml and build its registry.

    Raises :class:`ConfigError` listing every problem, whether in the file's
    structure, a handler's type, its properties or its job types.
    """
    config, problems = read_config(path)
    registry, handler_problems = build_registry(config, catalog)
    problems += handler_problems
    if problems:
        raise ConfigError(problems, source=str(path))
    return LoadedConfig(config=config, registry=registry)


def load_for_serving(
    path: str | Path | None,
    catalog: Mapping[str, uuid.UUID] | None = None,
    *,
    strict: bool = False,
    previous: Registry | None = None,
) -> LoadedConfig:
    """The configuration at ``path``, or the built-in default when ``path`` is None;
    ``catalog`` names job types beyond ``[job_types]`` (those synced or seen).

    A registration with problems does not stop it: it is kept at its version in
    ``previous`` (a reload) or quarantined (see :func:`build_registry`). Raises
    :class:`ConfigError` when the file cannot be used at all (not TOML, or a
    problem outside ``[[handlers]]``), listing those problems; with ``strict``,
    when anything is wrong, listing every problem.
    """
    if path is None:
        config = default_config()
        registry, problems = build_registry(config)
        if problems:
            raise ConfigError(problems, source="built-in default")
        return LoadedConfig(config, registry)
    config, problems = read_config(path)
    registry, handler_problems = build_registry(config, catalog, previous)
    fatal = config.file_problems(problems)
    if fatal:
        raise ConfigError(fatal, source=str(path))
    if strict and (problems or handler_problems):
        raise ConfigError(problems + handler_problems, source=str(path))
    return LoadedConfig(config, registry)
