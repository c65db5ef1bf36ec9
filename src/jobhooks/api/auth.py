"""Bearer tokens: who is calling, with a short cache so check-ins need no database read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy import Engine

from jobhooks.api.problems import ApiProblem
from jobhooks.store.tokens import TokenInfo, find_token, find_token_id, hash_token

__all__ = ["MAX_TOKEN_LENGTH", "TokenCache"]

MAX_TOKEN_LENGTH = 128
"""The longest token looked up. jobhooks issues 59 characters (``jh_<12 hex>_<43>``);
anything much longer is not one of ours, and is refused before the store is asked."""

_TTL = 10.0
_MAX_ENTRIES = 10_000


class TokenCache:
    """Looks tokens up in the store and remembers the tokens that exist for ``ttl`` seconds.

    A revoked token stops working within ``ttl`` seconds (at once after
    :meth:`forget`). Unknown tokens are never remembered, so callers without
    a valid token cannot make the cache grow; entries are keyed by the
    token's SHA-256 hash, never its text. Expired entries are dropped, and
    beyond ``max_entries`` the oldest go first.
    """

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], float] = time.monotonic,
        *,
        ttl: float = _TTL,
        max_entries: int = _MAX_ENTRIES,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._ttl = ttl
        self._max_entries = max(1, max_entries)
        # Insertion order is expiry order: every entry lives ``ttl`` from when it was added.
        self._cache: dict[str, tuple[TokenInfo, float]] = {}

    def __len__(self) -> int:
        """How many answers are cached."""
        return len(self._cache)

    async def lookup(self, token: str) -> TokenInfo | None:
        """What the token grants, or None (also for a token too long to be one)."""
        if not 0 < len(token) <= MAX_TOKEN_LENGTH:
            return None
        return await self._cached(f"token:{hash_token(token)}", find_token, token)

    async def lookup_id(self, token_id: str) -> TokenInfo | None:
        """What the token with this id grants, or None (a dashboard session holds the id)."""
        if not 0 < len(token_id) <= MAX_TOKEN_LENGTH:
            return None
        return await self._cached(f"id:{token_id}", find_token_id, token_id)

    async def _cached(
        self, key: str, find: Callable[[Engine, str], TokenInfo | None], value: str
    ) -> TokenInfo | None:
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(None, find, self._engine, value)
        now = self._clock()
        self._evict(now)
        self._cache.pop(key, None)  # re-added last, to keep insertion order = expiry order
        if info is not None:
            while len(self._cache) >= self._max_entries:
                del self._cache[next(iter(self._cache))]
            self._cache[key] = (info, now + self._ttl)
        return info

    def _evict(self, now: float) -> None:
        """Drop the expired entries, which are the oldest ones."""
        while self._cache:
            oldest = next(iter(self._cache))
            if self._cache[oldest][1] > now:
                return
            del self._cache[oldest]

    def forget(self, token_id: str | None = None) -> None:
        """Drop the cached answers for the token with ``token_id`` (after revoking it in this
        process), or every cached answer."""
        if token_id is None:
            self._cache.clear()
            return
        for key in [key for key, (info, _) in self._cache.items() if info.id == token_id]:
            del self._cache[key]

    async def require(self, authorization: str | None, *roles: str) -> TokenInfo:
        """The caller's token if it has one of ``roles``; raises 401 or 403 otherwise."""
        if not authorization:
            raise ApiProblem(401, "missing Authorization header: send 'Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiProblem(401, "the Authorization header must be 'Bearer <token>'")
        if len(token) > MAX_TOKEN_LENGTH:
            raise ApiProblem(
                401,
                f"malformed token: too long ({len(token)} characters; "
                f"jobhooks tokens have at most {MAX_TOKEN_LENGTH})",
            )
        info = await self.lookup(token)
        if info is None:
            raise ApiProblem(401, "unknown or revoked token")
        if info.role not in roles:
            raise ApiProblem(
                403, f"a {info.role} token cannot do this; it needs a {' or '.join(roles)} token"
            )
        return info
