"""Signed session cookies and CSRF tokens, without a server."""

from __future__ import annotations

from jobhooks.ui.session import SESSION_SECONDS, Signer, same_token

KEY = bytes(range(32))


def test_a_session_round_trips_and_expires() -> None:
    signer = Signer(KEY)
    cookie = signer.new_session("abc123", "viewer", now=1000.0)
    session = signer.session(cookie, now=1001.0)
    assert session is not None
    assert (session.token_id, session.role, session.can_replay) == ("abc123", "viewer", False)
    assert session.expires == 1000 + SESSION_SECONDS
    assert signer.session(cookie, now=1000.0 + SESSION_SECONDS + 1) is None


def test_a_tampered_or_foreign_cookie_is_refused() -> None:
    signer = Signer(KEY)
    cookie = signer.new_session("abc123", "viewer", now=1000.0)
    payload, mac = cookie.split(".")
    admin = Signer(KEY).sign("session", {"tid": "abc123", "role": "admin", "exp": 9e9, "n": "x"})
    assert signer.session(f"{admin.split('.')[0]}.{mac}", now=1001.0) is None
    assert signer.session(f"{payload}.{mac[:-2]}AA", now=1001.0) is None
    assert Signer(bytes(32)).session(cookie, now=1001.0) is None
    assert signer.session("not a cookie", now=1001.0) is None
    assert signer.session(None, now=1001.0) is None
    # A value signed for another purpose (the sign-in form's) is not a session.
    login, _csrf = signer.new_login(now=1000.0)
    assert signer.session(login, now=1001.0) is None


def test_an_agent_role_is_never_a_session() -> None:
    signer = Signer(KEY)
    forged = signer.sign("session", {"tid": "abc", "role": "agent", "exp": 9e9, "n": "x"})
    assert signer.session(forged, now=0) is None


def test_csrf_tokens_belong_to_their_session() -> None:
    signer = Signer(KEY)
    one = signer.session(signer.new_session("a", "admin", 0.0), now=1.0)
    two = signer.session(signer.new_session("a", "admin", 0.0), now=1.0)
    assert one is not None and two is not None
    assert one.csrf != two.csrf
    assert same_token(one.csrf, one.csrf)
    assert not same_token(one.csrf, two.csrf)
    assert not same_token(one.csrf, None)
    assert not same_token(one.csrf, "")


def test_the_sign_in_form_checks_its_cookie() -> None:
    signer = Signer(KEY)
    cookie, csrf = signer.new_login(now=0.0)
    _other_cookie, other_csrf = signer.new_login(now=0.0)
    assert signer.check_login(cookie, csrf, now=1.0)
    assert not signer.check_login(cookie, other_csrf, now=1.0)
    assert not signer.check_login(None, csrf, now=1.0)
    assert not signer.check_login(cookie, csrf, now=10_000.0)
