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


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    expires: int  # the ``exp`` claim


#: tokens whose signature and claims were checked, by (key, token): a client sends the
#: same bearer token with every request, and checking it again (base64, JSON, HMAC) cost
#: about a twentieth of the web's CPU for each order placed. Only what a check accepted
#: is kept, so nothing here can make a token valid that is not; its expiry is still
#: checked on every use, and whether the account still accepts it is not this cache's
#: business (``app.platform.access`` asks the database on every request).
_verified: dict[tuple[str, str], _Verified] = {}
#: tokens kept at most; the oldest go first (a few MB at most)
VERIFIED_TOKENS = 4096


def read_token(settings: Settings, token: str) -> Principal:
    key = settings.security.secret_key
    known = _verified.get((key, token))
    if known is None:
        known = _verify(key, token)
        if len(_verified) >= VERIFIED_TOKENS:
            del _verified[next(iter(_verified))]
        _verified[key, token] = known
    elif known.expires <= time.time():  # what PyJWT checks: expired at ``exp`` itself
        raise NotAuthenticated(N_("invalid or expired token"))
    return known.principal


def _verify(key: str, token: str) -> _Verified:
    try:
        claims = jwt.decode(
            token, key, algorithms=[JWT_ALGORITHM], options={"require": ["sub", "exp", "iat"]}
        )
        principal = Principal(
            user_id=uuid.UUID(claims["sub"]),
            role=str(claims.get("role", "")),
            issued_at=float(claims["iat"]),
        )
        return _Verified(principal, int(claims["exp"]))
    except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
        raise NotAuthenticated(N_("invalid or expired token")) from exc
