"""Password hashing (argon2id) and API bearer tokens (JWT)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.platform.errors import NotAuthenticated
from app.platform.i18n import N_
from app.platform.settings import Settings

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("not-a-real-password-used-for-timing")
JWT_ALGORITHM = "HS256"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; with no hash, burn the same time so timing leaks nothing."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Principal:
    """Who is calling: enough to authorize without a database round trip."""

    user_id: uuid.UUID
    role: str
    issued_at: float | None = None  # API tokens only
    #: the account's name as read when the request was authorized (None: not read)
    name: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in {"staff", "admin"}


def issue_token(settings: Settings, principal: Principal) -> tuple[str, int]:
    ttl = settings.security.jwt_ttl_seconds
    now = time.time()  # sub-second iat: a token from just before a password change dies
    claims = {
        "sub": str(principal.user_id),
        "role": principal.role,
        "iat": now,
        "exp": int(now) + ttl,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.security.secret_key, algorithm=JWT_ALGORITHM), ttl


def read_token(settings: Settings, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            settings.security.secret_key,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "exp", "iat"]},
        )
        return Principal(
            user_id=uuid.UUID(claims["sub"]),
            role=str(claims.get("role", "")),
            issued_at=float(claims["iat"]),
        )
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise NotAuthenticated(N_("invalid or expired token")) from exc
