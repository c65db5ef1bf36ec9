"""Bearer tokens: who is calling, with a short cache so check-ins need no database read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy import Engine

from jobhooks.api.problems import ApiProblem
from jobhooks.store.tokens import TokenInfo, find_token, find_token_id

__all__ = ["TokenCache"]

_POSITIVE_TTL = 10.0
_NEGATIVE_TTL = 2.0
_MAX_ENTRIES = 100_000


class TokenCache:
    """Looks tokens up in the store and remembers the answer for a few seconds.

    A revoked token stops working within ``_POSITIVE_TTL`` seconds.
    """

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._clock = clock
        self._cache: dict[str, tuple[TokenInfo | None, float]] = {}

    async def lookup(self, token: str) -> TokenInfo | None:
        """What the token grants, or None."""
        now = self._clock()
        hit = self._cache.get(token)
        if hit is not None and hit[1] > now:
            return hit[0]
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(None, find_token, self._engine, token)
        if len(self._cache) >= _MAX_ENTRIES:
            self._cache.clear()
        self._cache[token] = (info, now + (_POSITIVE_TTL if info else _NEGATIVE_TTL))
        return info

    async def lookup_id(self, token_id: str) -> TokenInfo | None:
        """What the token with this id grants, or None (a dashboard session holds the id)."""
        now = self._clock()
        key = f"id:{token_id}"
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(None, find_token_id, self._engine, token_id)
        if len(self._cache) >= _MAX_ENTRIES:
            self._cache.clear()
        self._cache[key] = (info, now + (_POSITIVE_TTL if info else _NEGATIVE_TTL))
        return info

    def forget(self) -> None:
        """Drop every cached answer (after a revocation in this process)."""
        self._cache.clear()

    async def require(self, authorization: str | None, *roles: str) -> TokenInfo:
        """The caller's token if it has one of ``roles``; raises 401 or 403 otherwise."""
        if not authorization:
            raise ApiProblem(401, "missing Authorization header: send 'Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiProblem(401, "the Authorization header must be 'Bearer <token>'")
        info = await self.lookup(token.strip())
        if info is None:
            raise ApiProblem(401, "unknown or revoked token")
        if info.role not in roles:
            raise ApiProblem(
                403, f"a {info.role} token cannot do this; it needs a {' or '.join(roles)} token"
            )
        return info
