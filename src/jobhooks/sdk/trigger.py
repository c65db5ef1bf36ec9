"""Why a run exists, when its registration runs only at certain moments (``when``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["TRIGGERS", "Trigger"]

TRIGGERS = (
    "always",
    "success",
    "warning",
    "failure",
    "first-failure",
    "failure-streak",
    "still-failing",
    "recovered",
)
"""The names ``when`` takes (see the README's "Notification rules")."""


@dataclass(frozen=True, slots=True)
class Trigger:
    """The moment a run was created for: ``context.trigger`` (None under
    ``when = "always"``), and ``trigger`` on the run in the API, the CLI and the
    dashboard."""

    kind: str
    """The trigger that fired: one of :data:`TRIGGERS` but ``always``."""
    streak: int
    """The job's consecutive failures at that completion (for ``recovered``, the
    streak it ended)."""
    since: datetime | None
    """When that streak began (None when the job was not failing)."""
    reason: str
    """One sentence: what happened, to which job, on which machine, since when."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``since`` as ISO 8601 UTC text."""
        since = None
        if self.since is not None:
            since = self.since.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"
        return {"kind": self.kind, "streak": self.streak, "since": since, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trigger:
        """The trigger :meth:`to_dict` gave. Raises ValueError for anything else."""
        kind, streak, since, reason = (data.get(k) for k in ("kind", "streak", "since", "reason"))
        if kind not in TRIGGERS or kind == "always":
            raise ValueError(f"not a trigger: {kind!r}")
        if not isinstance(streak, int) or isinstance(streak, bool) or streak < 0:
            raise ValueError(f"a trigger's streak is a count, not {streak!r}")
        if not isinstance(reason, str):
            raise ValueError("a trigger's reason is text")
        moment = None
        if since is not None:
            if not isinstance(since, str):
                raise ValueError("a trigger's since is an ISO 8601 time")
            moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
        return cls(kind, streak, moment, reason)
