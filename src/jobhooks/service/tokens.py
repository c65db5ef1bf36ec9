"""Who is calling: tokens looked up in the store, valid ones remembered for a few seconds
so a check-in needs no database read."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from jobhooks.store.tokens import TokenInfo, hash_token

__all__ = ["MAX_TOKEN_LENGTH", "TokenCache", "TokenLookup"]

MAX_TOKEN_LENGTH = 128
"""The longest token looked up. jobhooks issues 59 characters (``jh_<12 hex>_<43>``);
anything much longer is not one of ours, and is refused before the store is asked."""

_TTL = 10.0
_MAX_ENTRIES = 10_000


class TokenLookup(Protocol):
    """Where tokens are looked up (the store's tokens)."""

    async def find(self, token: str) -> TokenInfo | None:
        """What a presented token grants, or None."""
        ...

    async def find_id(self, token_id: str) -> TokenInfo | None:
        """What the token with this id grants, or None."""
        ...


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
        tokens: TokenLookup,
        clock: Callable[[], float] = time.monotonic,
        *,
        ttl: float = _TTL,
        max_entries: int = _MAX_ENTRIES,
    ) -> None:
        self._tokens = tokens
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
        return await self._cached(f"token:{hash_token(token)}", self._tokens.find, token)

    async def lookup_id(self, token_id: str) -> TokenInfo | None:
        """What the token with this id grants, or None (a dashboard session holds the id)."""
        if not 0 < len(token_id) <= MAX_TOKEN_LENGTH:
            return None
        return await self._cached(f"id:{token_id}", self._tokens.find_id, token_id)

    async def _cached(
        self, key: str, find: Callable[[str], Awaitable[TokenInfo | None]], value: str
    ) -> TokenInfo | None:
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        info = await find(value)
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
