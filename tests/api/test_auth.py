"""Bearer tokens and their cache: what a caller with no valid token can make the server keep.

The cache runs on an injected clock, so expiry is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pytest
from support.app import Api
from support.clock import ManualClock
from support.tokens import make_token, make_token_info, revoke

from jobhooks.service.tokens import TokenCache, TokenLookup
from jobhooks.store.tokens import TokenInfo

TTL = 10.0
LONGEST = 128
"""The longest token accepted: jobhooks issues 59-character tokens, the rest is slack."""


class TokenReads:
    """The store's tokens, counting every lookup that reaches them."""

    def __init__(self, tokens: TokenLookup) -> None:
        self.count = 0
        self._tokens = tokens

    async def find(self, token: str) -> TokenInfo | None:
        self.count += 1
        return await self._tokens.find(token)

    async def find_id(self, token_id: str) -> TokenInfo | None:
        self.count += 1
        return await self._tokens.find_id(token_id)


@pytest.fixture
def reads(api: Api) -> TokenReads:
    """Counts the lookups of the app's token cache."""
    counter = TokenReads(api.runtime.store.tokens)
    api.runtime.tokens = TokenCache(counter)
    return counter


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000.0)


@pytest.fixture
def cache(reads: TokenReads, clock: ManualClock) -> TokenCache:
    """A cache of its own on a clock the test moves, its lookups counted by ``reads``."""
    return TokenCache(reads, clock)


def unknown_token() -> str:
    """A token shaped as jobhooks makes them, that it never issued."""
    return f"jh_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def test_a_huge_token_is_refused_as_malformed_without_a_lookup(api: Api, reads: TokenReads) -> None:
    huge = "jh_" + "A" * 750_000
    started = time.perf_counter()
    response = api.client.get("/api/v1/handlers", headers={"Authorization": f"Bearer {huge}"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 401, response.text
    detail = response.json()["detail"]
    assert "malformed" in detail and "too long" in detail
    assert huge[:100] not in response.text
    assert reads.count == 0, "a token no jobhooks token could be is never looked up"
    assert len(api.runtime.tokens) == 0
    assert elapsed < 2.0


def test_a_token_at_the_length_limit_is_still_looked_up(api: Api) -> None:
    issued = api.tokens["viewer"]
    assert len(issued) < LONGEST
    at_limit = "jh_" + "a" * (LONGEST - 3)
    over = at_limit + "a"
    answers = [
        api.client.get("/api/v1/handlers", headers={"Authorization": f"Bearer {token}"})
        for token in (issued, at_limit, over)
    ]
    assert [answer.status_code for answer in answers] == [200, 401, 401]
    assert answers[1].json()["detail"] == "unknown or revoked token"
    assert "too long" in answers[2].json()["detail"]


def test_unknown_tokens_leave_nothing_in_the_cache(
    api: Api, cache: TokenCache, reads: TokenReads
) -> None:
    tokens = [unknown_token() for _ in range(500)]

    async def look_up_all() -> list[Any]:
        return [await cache.lookup(token) for token in tokens]

    assert asyncio.run(look_up_all()) == [None] * len(tokens)
    assert len(cache) == 0
    assert reads.count == len(tokens)
    # Through the API as well, on the runtime's own cache.
    for token in tokens[:50]:
        response = api.client.get("/api/v1/handlers", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
    assert len(api.runtime.tokens) == 0


def test_a_known_token_is_cached_until_the_ttl_ends(
    api: Api, cache: TokenCache, clock: ManualClock, reads: TokenReads
) -> None:
    token = api.tokens["viewer"]

    async def look_up() -> Any:
        return await cache.lookup(token)

    first = asyncio.run(look_up())
    assert first is not None and first.role == "viewer"
    assert reads.count == 1
    clock.advance(TTL - 0.5)
    assert asyncio.run(look_up()) == first
    assert reads.count == 1, "answered from the cache"
    assert revoke(api.runtime.store, first.id)
    assert asyncio.run(look_up()) == first, "a revocation shows within the TTL, not at once"
    clock.advance(1.0)
    assert asyncio.run(look_up()) is None
    assert reads.count == 2
    assert len(cache) == 0


def test_expired_entries_are_evicted(api: Api, cache: TokenCache, clock: ManualClock) -> None:
    store = api.runtime.store
    early = [make_token(store, "viewer") for _ in range(3)]
    late = api.tokens["admin"]

    async def look_up(*tokens: str) -> None:
        for token in tokens:
            assert await cache.lookup(token) is not None

    asyncio.run(look_up(*early))
    assert len(cache) == 3
    clock.advance(TTL + 1)
    asyncio.run(look_up(late))
    assert len(cache) == 1


def test_the_cache_never_holds_more_than_its_cap(
    api: Api, clock: ManualClock, reads: TokenReads
) -> None:
    cache = TokenCache(reads, clock, max_entries=2)
    oldest, middle, newest = api.tokens["admin"], api.tokens["viewer"], api.tokens["agent"]

    async def look_up(*tokens: str) -> None:
        for token in tokens:
            assert await cache.lookup(token) is not None

    asyncio.run(look_up(oldest, middle, newest))
    assert len(cache) == 2
    assert reads.count == 3
    asyncio.run(look_up(middle, newest))
    assert reads.count == 3, "the two newest stayed"
    asyncio.run(look_up(oldest))
    assert reads.count == 4, "the oldest was evicted"


def test_a_session_token_id_is_cached_only_when_it_exists(
    api: Api, cache: TokenCache, clock: ManualClock, reads: TokenReads
) -> None:
    viewer = make_token_info(api.runtime.store, "viewer")[1]

    async def look_up(token_id: str) -> Any:
        return await cache.lookup_id(token_id)

    assert asyncio.run(look_up("0123456789ab")) is None
    assert len(cache) == 0
    found = asyncio.run(look_up(viewer.id))
    assert found is not None and found.role == "viewer"
    assert asyncio.run(look_up(viewer.id)) == found
    assert reads.count == 2
    assert len(cache) == 1
    clock.advance(TTL + 1)
    assert asyncio.run(look_up(viewer.id)) == found
    assert reads.count == 3


def test_forgetting_a_revoked_token_ends_it_at_once_and_keeps_the_others(
    api: Api, cache: TokenCache, reads: TokenReads
) -> None:
    store = api.runtime.store
    revoked, revoked_info = make_token_info(store, "viewer")
    kept = api.tokens["admin"]

    async def look_up(token: str) -> Any:
        return await cache.lookup(token)

    assert asyncio.run(look_up(revoked)) is not None
    assert asyncio.run(look_up(kept)) is not None
    assert revoke(store, revoked_info.id)
    cache.forget(revoked_info.id)
    assert asyncio.run(look_up(revoked)) is None
    before = reads.count
    assert asyncio.run(look_up(kept)) is not None
    assert reads.count == before, "the other token is still cached"


def test_a_token_of_the_wrong_role_is_told_which_it_needs(api: Api) -> None:
    answer = api.client.get("/api/v1/handlers", headers=api.auth("agent"))

    assert answer.status_code == 403
    assert answer.json()["detail"] == (
        "an agent token cannot do this; it needs an admin or viewer token"
    )
