"""The shape of jobhooks.toml: frozen, typed settings with their defaults."""

from __future__ import annotations

import difflib
import importlib.util
import re
import ssl
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_validator,
)

from jobhooks.config.origin import ConfigOrigin
from jobhooks.escapes import has_controls
from jobhooks.sdk.secret import MASK, Secret
from jobhooks.sdk.trigger import TRIGGERS

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_GROUP_MAX",
    "DEFAULT_GROUP_WAIT",
    "DEFAULT_LISTEN",
    "GROUP_FIELDS",
    "MAX_STREAK",
    "HandlerRegistration",
    "JobhooksConfig",
    "PlatformSettings",
    "PollSettings",
    "ServerSettings",
    "SmtpSettings",
    "SmtpTls",
    "UnreadRegistration",
]

DEFAULT_LISTEN = "127.0.0.1:8080"
_HOST_NAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?", re.ASCII)
"""A name a ``Host`` header may carry (an IPv4 address fits too; addresses are always
answered, so IPv6 ones need no entry)."""
GROUP_FIELDS = ("job_type", "job_type_id", "client_machine", "agent_id", "job_result", "job_id")
"""The context fields a registration's digests may be grouped by (``group_by``)."""
DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_MAX = 100
DEFAULT_DATABASE = "sqlite:///jobhooks-data/jobhooks.db"
MAX_STREAK = 1_000_000
"""The longest failure streak a rule counts to (``streak``, ``test-handler --streak``)."""

PositiveSeconds = Annotated[float, Field(gt=0, le=86_400)]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(value: object) -> object:
    """Seconds from a number or text such as ``"30s"``, ``"5m"``, ``"6h"``, ``"1d"``
    (other values are left for the field's own check to refuse)."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"expected a duration: seconds, or a number with s, m, h or d "
                f'(such as "30s", "6h"), got {value!r}'
            )
        return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    return value


def format_duration(seconds: float) -> str:
    """A duration as people write it in the configuration: ``6h``, ``90s``, ``1.5s``."""
    for unit in ("d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0, le=366 * 86_400)]
"""Seconds, or text with a unit: ``"30s"``, ``"5m"``, ``"6h"``, ``"1d"``."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_ca_bundle(value: str | None) -> str | None:
    """A ``ca_bundle`` must name a readable PEM file of certificates: checked when the
    configuration is read, not at the first connection."""
    if value is None:
        return None
    try:
        ssl.create_default_context(cafile=value)
    except FileNotFoundError:
        raise ValueError(f"no such file: {value}") from None
    except IsADirectoryError:
        raise ValueError(f"{value} is a folder; name the PEM file of the CA certificates") from None
    except PermissionError:
        raise ValueError(f"cannot read {value}: permission denied") from None
    except (ssl.SSLError, OSError, ValueError):
        raise ValueError(f"{value} holds no PEM certificate to trust") from None
    return value


class ServerSettings(_Section):
    """``[server]``: where the API listens and what it stores in."""

    listen: str = DEFAULT_LISTEN
    database: str = DEFAULT_DATABASE
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 32
    threads: Annotated[int, Field(ge=1, le=256)] = 8
    lease: PositiveSeconds = 60.0
    log_level: Literal["debug", "info", "warning", "error", "critical"] | None = None
    """Least severe level logged by serve, worker and poll (None: each command's own)."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line, for a log collector."""
    allowed_hosts: tuple[str, ...] = ()
    """The names the API and dashboard answer to (addresses and ``localhost`` always are);
    empty: any name. Applied at a reload."""

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT such as {DEFAULT_LISTEN!r}, got {value!r}")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_allowed_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = []
        for name in value:
            if not _HOST_NAME.fullmatch(name):
                raise ValueError(
                    "expected host names such as 'jobhooks.example.com' (no scheme, port or "
                    f"path), got {name[:100]!r}"
                )
            names.append(name.lower().removesuffix("."))
        return tuple(names)

    @field_validator("database")
    @classmethod
    def _check_database(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError(
                "expected a sqlite:///PATH or postgresql://USER@HOST/DB URL, "
                f"got {value.split('://')[0]!r}"
            )
        return value


class PlatformSettings(_Section):
    """``[platform]``: the platform API that ``context.client`` and the poller talk to."""

    url: str | None = None
    auth: Literal["basic", "negotiate"] | None = None
    """``negotiate``: Windows authentication, as Keyfactor Command's own client
    (``UseDefaultCredentials``): Kerberos from the service's keytab or ticket cache, or
    NTLM with ``username`` and ``password`` (the optional extra ``jobhooks[windows-auth]``).
    Unset: Basic with a username and password, else the bearer token or OAuth credentials
    given."""
    username: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    """A bearer token sent as ``Authorization: Bearer``, instead of a username and password."""
    token_url: str | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    scope: str | None = None
    ca_bundle: str | None = None
    verify: bool = True
    timeout: PositiveSeconds = 30.0
    api_version: str = "1"

    _check_ca_bundle = field_validator("ca_bundle")(check_ca_bundle)

    @field_validator("url", "token_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        if value is not None and "@" in urlsplit(value).netloc:
            # It would authenticate, and be printed whole in every log line naming the URL.
            raise ValueError(
                "carries credentials (user:password@ before the host): give them as "
                "[platform] username and password (or client_id and client_secret), which "
                "are never printed"
            )
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _check_credentials(self) -> PlatformSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: give both or neither")
        if self.token is not None and self.username is not None:
            raise ValueError("give either a bearer token or a username and password, not both")
        oauth = (self.token_url, self.client_id, self.client_secret)
        if any(part is not None for part in oauth) and None in oauth:
            raise ValueError("OAuth needs token_url, client_id and client_secret together")
        if self.auth == "basic" and self.username is None:
            raise ValueError('auth = "basic" needs username and password')
        if self.auth == "negotiate":
            _check_negotiate(self)
        return self


def _check_negotiate(settings: PlatformSettings) -> None:
    """``auth = "negotiate"``: no other credential beside it, and what it needs installed."""
    if settings.token is not None or settings.token_url is not None:
        raise ValueError(
            'auth = "negotiate" is Windows authentication: remove token, or token_url, '
            "client_id and client_secret"
        )
    if importlib.util.find_spec("spnego") is None:
        raise ValueError(
            'auth = "negotiate" needs the optional extra: pip install "jobhooks[windows-auth]"'
        )
    if settings.username is None and sys.platform != "win32":
        if importlib.util.find_spec("gssapi") is None:
            raise ValueError(
                'auth = "negotiate" without username and password is Kerberos from the '
                "service's keytab or ticket cache, which needs GSSAPI: pip install "
                '"pyspnego[kerberos]" (it builds against the system\'s Kerberos libraries); '
                "or give username and password for NTLM"
            )


SmtpTls = Literal["auto", "starttls", "implicit", "none"]
"""How an SMTP connection is encrypted: ``auto`` (implicit TLS on port 465, else
STARTTLS whenever the server offers it), ``starttls`` or ``implicit`` (required),
``none`` (never; the only mode that may send a password in clear)."""


class SmtpSettings(_Section):
    """``[smtp]``: defaults for the email handlers."""

    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    username: str | None = None
    password: Secret | None = None
    mail_from: str | None = None
    tls: SmtpTls | None = None
    """Unset means ``auto``. ``true`` and ``false``, from older files, read as
    ``implicit`` and unset."""
    starttls: bool | None = None
    """The older spelling: ``true`` reads as ``tls = "starttls"``, ``false`` as unset."""
    ca_bundle: str | None = None
    """PEM file of the CA(s) that signed the SMTP server's certificate (an internal relay)."""
    timeout: PositiveSeconds = 30.0

    _check_ca_bundle = field_validator("ca_bundle")(check_ca_bundle)

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_from_bool(cls, value: object) -> object:
        if isinstance(value, bool):
            return "implicit" if value else None
        return value

    @model_validator(mode="after")
    def _check_tls(self) -> SmtpSettings:
        if self.starttls and self.tls is not None:
            raise ValueError(
                f'starttls and tls exclude each other: keep tls = "{self.tls}" only '
                '(starttls = true is the older spelling of tls = "starttls")'
            )
        return self

    @property
    def tls_mode(self) -> SmtpTls | None:
        """The TLS mode this section sets, or None when it leaves it to the default."""
        return "starttls" if self.starttls else self.tls


class PollSettings(_Section):
    """``[poll]``: following the platform's job history (pull mode)."""

    enabled: bool = False
    interval: PositiveSeconds = 30.0
    start: str = "now"
    """First run only: "now", or an ISO 8601 time (UTC unless it has an offset)."""
    page_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    lease: Annotated[float, Field(ge=1, le=3600)] = 60.0
    """Seconds a polling node holds the poller's lease; another node takes over after it."""

    @field_validator("start")
    @classmethod
    def _check_start(cls, value: str) -> str:
        if value.strip().lower() == "now":
            return "now"
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f'expected "now" or an ISO 8601 time such as "2026-11-22T10:00:00Z", got {value!r}'
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        try:
            return moment.astimezone(UTC).isoformat()
        except OverflowError:
            raise ValueError(f"{value!r} is before the year 1 in UTC") from None

    def start_time(self) -> datetime | None:
        """The UTC time ``start`` names, or None for "now"."""
        return None if self.start == "now" else datetime.fromisoformat(self.start)


class HandlerRegistration(_Section):
    """One ``[[handlers]]`` table: which handler runs for which job types, and how."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    type: Annotated[str, Field(min_length=1)]
    job_types: str | list[str] | None = None
    properties: dict[str, object] = Field(default_factory=dict, repr=False)
    timeout: PositiveSeconds = 30.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    backoff: Annotated[float, Field(ge=0, le=86_400)] = 10.0
    isolation: Literal["none", "process"] = "none"
    enabled: bool = True
    when: str | list[str] = "always"
    """The moments it runs for (see :data:`~jobhooks.sdk.trigger.TRIGGERS`)."""
    streak: Annotated[int, Field(ge=1, le=MAX_STREAK)] = 3
    """``failure-streak``: the consecutive failure of a job that fires it."""
    repeat_every: Duration | None = None
    """``still-failing``: how often, at most, while the streak lasts."""
    group_by: str | list[str] | None = None
    """Digest what fires into one run per group of these context fields (``[]``: one group)."""
    group_wait: Duration | None = None
    """How long a digest collects after its first completion (default 30 s)."""
    group_max: Annotated[int, Field(ge=1, le=1000)] | None = None
    """The most completions one digest holds (default 100); a full digest closes at once."""
    _position: int | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if "/" in value:
            raise ValueError(
                "must not contain '/': a handler's name is a part of the dashboard's and the "
                "API's addresses (/api/v1/handlers/<name>/replay-dead)"
            )
        if has_controls(value):
            raise ValueError("must not contain control characters or direction marks")
        if value != value.strip():
            raise ValueError("must not begin or end with spaces")
        return value

    @field_validator("when")
    @classmethod
    def _check_when(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names:
            raise ValueError('when is empty; it would run for nothing (use "always")')
        for name in names:
            if name not in TRIGGERS:
                close = difflib.get_close_matches(name, TRIGGERS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown trigger {name!r}{hint} (one of {', '.join(TRIGGERS)})")
        if "always" in names and len(names) > 1:
            raise ValueError('"always" means every completion; list nothing beside it')
        if len(set(names)) != len(names):
            raise ValueError("a trigger is listed twice")
        return value

    @property
    def triggers(self) -> tuple[str, ...]:
        """``when`` as a tuple of trigger names."""
        return (self.when,) if isinstance(self.when, str) else tuple(self.when)

    @model_validator(mode="after")
    def _check_repeat(self) -> HandlerRegistration:
        if "still-failing" in self.triggers and self.repeat_every is None:
            raise ValueError(
                'when = "still-failing" needs repeat_every (how often, at most, while the '
                'job keeps failing, such as "6h")'
            )
        if self.repeat_every is not None and "still-failing" not in self.triggers:
            raise ValueError('repeat_every is used by when = "still-failing" only')
        if self.group_by is None and (self.group_wait is not None or self.group_max is not None):
            raise ValueError(
                "group_wait and group_max shape digests: set group_by too "
                '(such as group_by = ["client_machine"], or [] for one digest)'
            )
        return self

    @field_validator("group_by")
    @classmethod
    def _check_group_by(cls, value: str | list[str] | None) -> list[str] | None:
        if isinstance(value, str):
            value = [value]
        for name in value or ():
            if name not in GROUP_FIELDS:
                close = difflib.get_close_matches(name, GROUP_FIELDS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"cannot group by {name!r}{hint} (one of {', '.join(GROUP_FIELDS)})"
                )
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a field is listed twice")
        return value

    @property
    def position(self) -> int | None:
        """Index of this table among the file's ``[[handlers]]``, when read from a file."""
        return self._position

    @field_serializer("properties")
    def _mask_properties(self, properties: dict[str, object]) -> dict[str, object]:
        # Which properties are secrets depends on the handler type, unknown here.
        return {key: _mask_text(value) for key, value in properties.items()}


def _mask_text(value: object) -> object:
    """Mask literal text (any may be a secret); references and numbers are not secret."""
    if isinstance(value, str):
        return value if value.startswith(("env:", "file:")) else MASK
    if isinstance(value, list):
        return [_mask_text(item) for item in value]
    if isinstance(value, dict):
        return {key: _mask_text(item) for key, item in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class UnreadRegistration:
    """A ``[[handlers]]`` table that did not validate: what could still be read of it."""

    index: int
    name: str | None
    job_types: object
    """``job_types`` as written (or ``JobTypes`` among its properties), None if absent."""
    enabled: bool
    rules: HandlerRegistration | None
    """Its ``when``, ``streak`` and ``repeat_every`` (on a stand-in registration), or None
    when they cannot be read."""
    refused: frozenset[str] = frozenset()
    """The keys whose values the schema refused (their problems are said already)."""


class JobhooksConfig(_Section):
    """A whole jobhooks.toml, validated."""

    server: ServerSettings = Field(default_factory=ServerSettings)
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    poll: PollSettings = Field(default_factory=PollSettings)
    job_types: dict[str, uuid.UUID] = Field(default_factory=dict)
    handlers: list[HandlerRegistration] = Field(default_factory=list)
    _origin: ConfigOrigin = PrivateAttr(default_factory=ConfigOrigin.empty)
    _registration_problems: dict[int, tuple[str, ...]] = PrivateAttr(default_factory=dict)
    _unread: tuple[UnreadRegistration, ...] = PrivateAttr(default=())

    @property
    def origin(self) -> ConfigOrigin:
        """Where this configuration was read from, to point problems at lines."""
        return self._origin

    @property
    def registration_problems(self) -> Mapping[int, tuple[str, ...]]:
        """The problems found while reading, of each ``[[handlers]]`` table by its index
        (a table that did not validate, a duplicate name); a disabled table has none."""
        return self._registration_problems

    @property
    def unread_registrations(self) -> tuple[UnreadRegistration, ...]:
        """The ``[[handlers]]`` tables that did not validate, in file order."""
        return self._unread

    def file_problems(self, problems: Sequence[str]) -> list[str]:
        """Those of ``problems`` that are not a registration's: the file cannot be used."""
        theirs = {problem for found in self._registration_problems.values() for problem in found}
        return [problem for problem in problems if problem not in theirs]

    @model_validator(mode="after")
    def _check_poll(self) -> JobhooksConfig:
        if self.poll.enabled and not self.platform.url:
            raise ValueError(
                "[poll] enabled = true reads the platform's job history: "
                "set [platform] url (and its credentials)"
            )
        return self
