"""Bearer tokens on the HTTP API: who is calling, and may they do this."""

from __future__ import annotations

from jobhooks.api.problems import ApiProblem
from jobhooks.service.tokens import MAX_TOKEN_LENGTH, TokenCache
from jobhooks.store.tokens import TokenInfo

__all__ = ["require"]


async def require(tokens: TokenCache, authorization: str | None, *roles: str) -> TokenInfo:
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
    info = await tokens.lookup(token)
    if info is None:
        raise ApiProblem(401, "unknown or revoked token")
    if info.role not in roles:
        needs = " or ".join(roles)
        raise ApiProblem(
            403,
            f"{_a(info.role)} {info.role} token cannot do this; it needs {_a(needs)} {needs} token",
        )
    return info


def _a(word: str) -> str:
    """The article before ``word``: "an admin", "an agent", "a viewer"."""
    return "an" if word[:1] in "aeiou" else "a"
