"""Passwords (argon2id) and API tokens (JWT)."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from app.platform import security
from app.platform.errors import NotAuthenticated
from app.platform.security import (
    JWT_ALGORITHM,
    Principal,
    hash_password,
    issue_token,
    read_token,
    verify_password,
)
from app.platform.settings import SecuritySettings, Settings


def _settings(ttl: int = 900) -> Settings:
    return Settings(security=SecuritySettings(secret_key="k" * 40, jwt_ttl_seconds=ttl))


def test_passwords_are_argon2id_and_verify() -> None:
    hashed = hash_password("correct-horse-battery")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct-horse-battery")
    assert not verify_password(hashed, "wrong-horse-battery")
    assert not verify_password(None, "correct-horse-battery")
    assert not verify_password("not-a-hash", "x")


def test_token_round_trip() -> None:
    principal = Principal(user_id=uuid.uuid4(), role="customer")
    token, ttl = issue_token(_settings(), principal)
    assert ttl == 900
    before = time.time()
    back = read_token(_settings(), token)
    assert (back.user_id, back.role) == (principal.user_id, principal.role)
    assert back.issued_at is not None and abs(back.issued_at - before) < 5


def test_expired_tampered_and_foreign_tokens_are_refused() -> None:
    principal = Principal(user_id=uuid.uuid4(), role="customer")
    settings = _settings()
    token, _ = issue_token(settings, principal)
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    expired = jwt.encode(
        {
            "sub": str(principal.user_id),
            "iat": int(time.time()) - 100,
            "exp": int(time.time()) - 10,
        },
        settings.security.secret_key,
        algorithm=JWT_ALGORITHM,
    )
    foreign, _ = issue_token(Settings(security=SecuritySettings(secret_key="x" * 40)), principal)
    for bad in (tampered, expired, foreign, "garbage"):
        with pytest.raises(NotAuthenticated):
            read_token(settings, bad)


def test_a_token_read_before_still_expires_on_time(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(ttl=60)
    token, _ = issue_token(settings, Principal(user_id=uuid.uuid4(), role="customer"))
    first = read_token(settings, token)
    assert read_token(settings, token) == first, "the same token: the same principal"

    later = time.time() + 61
    monkeypatch.setattr(security.time, "time", lambda: later)
    with pytest.raises(NotAuthenticated):
        read_token(settings, token)
    with pytest.raises(NotAuthenticated):
        read_token(settings, token)  # and stays refused


def test_a_token_accepted_under_one_key_is_refused_under_another() -> None:
    token, _ = issue_token(_settings(), Principal(user_id=uuid.uuid4(), role="customer"))
    read_token(_settings(), token)
    rotated = Settings(security=SecuritySettings(secret_key="r" * 40))
    with pytest.raises(NotAuthenticated):
        read_token(rotated, token)


def test_the_tokens_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "VERIFIED_TOKENS", 3)
    monkeypatch.setattr(security, "_verified", {})
    settings = _settings()
    tokens = [issue_token(settings, Principal(uuid.uuid4(), "customer"))[0] for _ in range(5)]
    for token in tokens:
        read_token(settings, token)
    assert len(security._verified) == 3
    assert all(read_token(settings, token) for token in tokens), "evicted: checked again"
