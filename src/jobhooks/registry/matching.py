"""The registry: an immutable snapshot of the handlers that run, indexed by job type."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from jobhooks.config.schema import format_duration
from jobhooks.sdk.handler import JobCompleteHandler

__all__ = [
    "DeliveryPolicy",
    "Grouping",
    "RegisteredHandler",
    "RegistrationProblem",
    "Registry",
    "WhenRules",
]


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How a handler's runs are delivered: time limit, attempts and retry spacing."""

    timeout: float = 30.0
    max_attempts: int = 5
    backoff: float = 10.0
    isolation: Literal["none", "process"] = "none"


@dataclass(frozen=True, slots=True)
class WhenRules:
    """When a registration runs: ``when`` with its settings (see the README's
    "Notification rules"). The default runs for every completion."""

    triggers: tuple[str, ...] = ("always",)
    streak: int = 3
    repeat_every: float | None = None

    @property
    def always(self) -> bool:
        """True when it runs for every completion of its job types."""
        return self.triggers == ("always",)

    def describe(self) -> str:
        """``when`` for people: ``failure-streak (3rd), still-failing (every 6h)``."""
        shown = []
        for kind in self.triggers:
            if kind == "failure-streak":
                shown.append(f"failure-streak (at {self.streak})")
            elif kind == "still-failing" and self.repeat_every is not None:
                shown.append(f"still-failing (every {format_duration(self.repeat_every)})")
            else:
                shown.append(kind)
        return ", ".join(shown)


@dataclass(frozen=True, slots=True)
class Grouping:
    """A registration's digests: what fires within ``wait`` seconds of the first completion
    of a group (the same values of ``fields``), at most ``most`` of them, is one run."""

    fields: tuple[str, ...]
    wait: float
    most: int

    def describe(self) -> str:
        """``by client_machine, 30s, at most 100`` for people."""
        by = ", ".join(self.fields) if self.fields else "one digest"
        return f"by {by}; {format_duration(self.wait)}, at most {self.most}"


@dataclass(frozen=True, slots=True)
class RegisteredHandler:
    """One registration: a configured handler instance and what it runs for."""

    name: str
    type_name: str
    handler: JobCompleteHandler
    job_types: tuple[uuid.UUID, ...] | None
    """The job type ids it runs for, in registration order; None means every job type."""
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    job_type_labels: tuple[str, ...] = ()
    """The job types as written in the registration (names or GUIDs), for display."""
    when: WhenRules = field(default_factory=WhenRules)
    grouping: Grouping | None = None
    """Its digests (``group_by``); None runs once per completion that fires it."""

    @property
    def runs_for_all(self) -> bool:
        """True when registered with ``job_types = "*"``."""
        return self.job_types is None


@dataclass(frozen=True, slots=True)
class RegistrationProblem:
    """A registration that cannot run as written, and what is done about it.

    Quarantined (``kept`` false): it does not run; a completion of its job types
    gets a ``held`` run for it (when ``holds``), which runs once a valid
    registration of that name is loaded. Kept (``kept`` true): a reload found
    problems in it, and its last good version keeps running.
    """

    name: str
    problems: tuple[str, ...]
    kept: bool = False
    job_types: tuple[uuid.UUID, ...] | None = ()
    """The job type ids it was written for; None means every job type."""
    holds: bool = False
    """True when its name, job types and ``when`` could be read: its completions are held."""
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    when: WhenRules = field(default_factory=WhenRules)

    def holds_for(self, job_type_id: uuid.UUID) -> bool:
        """True when a completion of ``job_type_id`` gets a held run for it."""
        if not self.holds or self.kept:
            return False
        return self.job_types is None or job_type_id in self.job_types


class Registry:
    """Which handlers run for which job type, answered in O(1).

    A registry never changes once built; a reload builds a new one and swaps
    the reference, so a lookup in flight always sees one consistent snapshot.
    ``problems`` lists the registrations that cannot run as written.
    """

    __slots__ = ("_by_job_type", "_by_name", "_for_all", "_handlers", "_problems")

    def __init__(
        self,
        handlers: Iterable[RegisteredHandler] = (),
        problems: Iterable[RegistrationProblem] = (),
    ) -> None:
        self._handlers: tuple[RegisteredHandler, ...] = tuple(handlers)
        self._problems: tuple[RegistrationProblem, ...] = tuple(problems)
        self._by_name: Mapping[str, RegisteredHandler] = MappingProxyType(
            {registered.name: registered for registered in self._handlers}
        )
        self._for_all = tuple(h for h in self._handlers if h.job_types is None)
        index: dict[uuid.UUID, list[RegisteredHandler]] = {}
        for registered in self._handlers:
            for job_type in registered.job_types or ():
                index.setdefault(job_type, [])
        for job_type, matched in index.items():
            matched.extend(
                h for h in self._handlers if h.job_types is None or job_type in h.job_types
            )
        self._by_job_type: Mapping[uuid.UUID, tuple[RegisteredHandler, ...]] = MappingProxyType(
            {job_type: tuple(matched) for job_type, matched in index.items()}
        )

    @property
    def handlers(self) -> tuple[RegisteredHandler, ...]:
        """Every enabled registration, in registration order."""
        return self._handlers

    def for_job_type(self, job_type_id: uuid.UUID) -> tuple[RegisteredHandler, ...]:
        """The handlers that run for a job type id, in registration order."""
        return self._by_job_type.get(job_type_id, self._for_all)

    @property
    def problems(self) -> tuple[RegistrationProblem, ...]:
        """The registrations with problems: quarantined, or kept at their last good version."""
        return self._problems

    @property
    def quarantined(self) -> tuple[RegistrationProblem, ...]:
        """The registrations that do not run."""
        return tuple(problem for problem in self._problems if not problem.kept)

    def held_for(self, job_type_id: uuid.UUID) -> tuple[RegistrationProblem, ...]:
        """The quarantined registrations a completion of ``job_type_id`` gets held runs for."""
        return tuple(problem for problem in self._problems if problem.holds_for(job_type_id))

    def get(self, name: str) -> RegisteredHandler | None:
        """The registration called ``name``, if any."""
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self._handlers)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._handlers)
