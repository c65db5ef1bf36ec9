"""Which orchestrator ran a job: ``GET /Agents``, cached, matched on the machine name."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from jobhooks.platform.rest import AGENTS, PlatformApi
from jobhooks.poll.rows import parse_time

__all__ = ["Agent", "AgentDirectory", "pick_agents"]

logger = logging.getLogger("jobhooks.poll")

APPROVED = 2
"""``Status`` of an approved agent (1 new, 2 approved, 3 disapproved)."""


@dataclass(frozen=True, slots=True)
class Agent:
    """An orchestrator as the platform registers it."""

    id: uuid.UUID
    username: str
    machine: str


def _rank(item: dict[str, Any]) -> tuple[int, float, str]:
    approved = 1 if item.get("Status") in (APPROVED, "Approved", str(APPROVED)) else 0
    try:
        seen = parse_time(item.get("LastSeen"))
    except ValueError:
        seen = None
    return approved, seen.timestamp() if seen else 0.0, str(item.get("AgentId"))


def pick_agents(items: Iterable[Any]) -> dict[str, Agent]:
    """One agent per machine name (case-insensitive).

    Several agents on one machine (a re-installed orchestrator keeps its old
    registration) resolve to the approved one seen most recently.
    """
    best: dict[str, tuple[tuple[int, float, str], Agent]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        machine = item.get("ClientMachine")
        try:
            agent_id = uuid.UUID(str(item.get("AgentId")))
        except ValueError:
            continue
        if not isinstance(machine, str) or not machine:
            continue
        username = item.get("Username")
        agent = Agent(agent_id, username if isinstance(username, str) else "", machine)
        rank = _rank(item)
        key = machine.casefold()
        if key not in best or rank > best[key][0]:
            best[key] = (rank, agent)
    return {key: agent for key, (_rank_value, agent) in best.items()}


class AgentDirectory:
    """Agents by machine name, read once and read again when a machine is not found
    (at most every ``refresh_every`` seconds)."""

    def __init__(
        self,
        api: PlatformApi,
        *,
        refresh_every: float = 30.0,
        page_size: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._refresh_every = refresh_every
        self._page_size = page_size
        self._clock = clock
        self._agents: dict[str, Agent] | None = None
        self._loaded_at = 0.0
        self._warned: set[str] = set()

    async def refresh(self) -> None:
        """Read every agent again."""
        items = await self._api.all_pages(AGENTS, self._page_size)
        self._agents = pick_agents(items)
        self._loaded_at = self._clock()

    async def resolve(self, machine: str) -> Agent | None:
        """The agent on ``machine``, or None (logged once per machine) if none is registered."""
        key = machine.casefold()
        stale = self._clock() - self._loaded_at >= self._refresh_every
        if self._agents is None or (key not in self._agents and stale):
            await self.refresh()
        assert self._agents is not None
        agent = self._agents.get(key)
        if agent is None and key not in self._warned:
            self._warned.add(key)
            logger.warning(
                "no agent is registered for machine %r in GET /Agents: its completions "
                "get the nil agent id (00000000-0000-0000-0000-000000000000)",
                machine,
            )
        return agent
