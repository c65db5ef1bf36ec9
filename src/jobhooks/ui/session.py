"""Dashboard sessions: signed cookies that name a token, expire, and carry a CSRF secret.

A session cookie holds the token's id (never the token), its role, an
expiry and a random nonce (the session's id), signed with HMAC-SHA256 under a
key kept in the database (so every node checks what any node signed). Each
request checks that the session is still open in the database (signing out
or revoking the token ends it at once, whatever copies of the cookie exist)
and that the token is still valid. Forms carry a CSRF token derived from the
nonce; the sign-in form, which has no session yet, gets a short-lived
signed cookie of its own for the same purpose.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KEY_NAME",
    "LOGIN_COOKIE",
    "LOGIN_SECONDS",
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "Session",
    "Signer",
    "same_token",
]

KEY_NAME = "ui-session"
"""The row of ``signing_keys`` that signs sessions."""
SESSION_COOKIE = "jobhooks_session"
LOGIN_COOKIE = "jobhooks_login"
SESSION_SECONDS = 8 * 3600
LOGIN_SECONDS = 3600
ROLES = ("admin", "viewer")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def same_token(expected: str, presented: str | None) -> bool:
    """True when a form's CSRF token is the session's (compared in constant time)."""
    return bool(presented) and hmac.compare_digest(expected, str(presented))


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in operator: the token's id and role, when the session ends, its CSRF token."""

    token_id: str
    role: str
    expires: float
    csrf: str
    id: str = ""
    """The session's id, kept in the database until sign-out."""

    @property
    def can_replay(self) -> bool:
        """Admins replay runs; viewers only read."""
        return self.role == "admin"


class Signer:
    """Signs and checks values for one purpose each, under one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, purpose: str, text: str) -> bytes:
        return hmac.new(self._key, f"{purpose}\n{text}".encode(), hashlib.sha256).digest()

    def sign(self, purpose: str, payload: dict[str, Any]) -> str:
        """``payload`` (with an ``exp`` epoch second) as ``base64(json).base64(mac)``."""
        text = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        return f"{text}.{_b64(self._mac(purpose, text))}"

    def verify(self, purpose: str, value: str | None, now: float) -> dict[str, Any] | None:
        """The payload of a value signed for ``purpose`` that has not expired, else None."""
        if not value or value.count(".") != 1 or len(value) > 4096:
            return None
        text, mac = value.split(".")
        try:
            presented = _unb64(mac)
            payload = json.loads(_unb64(text))
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(presented, self._mac(purpose, text)):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int | float):
            return None
        return payload if payload["exp"] > now else None

    def csrf(self, nonce: str) -> str:
        """The CSRF token of forms in the session (or sign-in page) holding ``nonce``."""
        return _b64(self._mac("csrf", nonce))

    def check_csrf(self, nonce: str, presented: str | None) -> bool:
        """True when ``presented`` is the CSRF token for ``nonce``."""
        return same_token(self.csrf(nonce), presented)

    def new_session(
        self, token_id: str, role: str, now: float, session_id: str | None = None
    ) -> str:
        """A session cookie value for a token, valid :data:`SESSION_SECONDS`; its nonce is
        the session's id (``session_id``, or a new random one)."""
        payload = {
            "tid": token_id,
            "role": role,
            "exp": int(now + SESSION_SECONDS),
            "n": session_id or secrets.token_urlsafe(16),
        }
        return self.sign("session", payload)

    def session(self, value: str | None, now: float) -> Session | None:
        """The session a cookie holds, if its signature and expiry are good (the token
        itself still has to be checked)."""
        payload = self.verify("session", value, now)
        if payload is None:
            return None
        token_id, role, nonce = payload.get("tid"), payload.get("role"), payload.get("n")
        if not isinstance(token_id, str) or role not in ROLES or not isinstance(nonce, str):
            return None
        return Session(token_id, str(role), float(payload["exp"]), self.csrf(nonce), nonce)

    def new_login(self, now: float) -> tuple[str, str]:
        """(cookie value, CSRF token) for a sign-in form."""
        nonce = secrets.token_urlsafe(16)
        return self.sign("login", {"n": nonce, "exp": int(now + LOGIN_SECONDS)}), self.csrf(nonce)

    def check_login(self, cookie: str | None, presented: str | None, now: float) -> bool:
        """True when a sign-in form's CSRF token matches its cookie."""
        payload = self.verify("login", cookie, now)
        nonce = payload.get("n") if payload else None
        return isinstance(nonce, str) and self.check_csrf(nonce, presented)
