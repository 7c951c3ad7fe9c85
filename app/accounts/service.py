"""Accounts use cases: sign up, authenticate, create users from the command line."""

from __future__ import annotations

import re
import uuid
from functools import lru_cache
from pathlib import Path

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role, User
from app.platform.access import AccountStanding
from app.platform.db import utcnow
from app.platform.driver import Statement
from app.platform.errors import Conflict, FieldError, InvalidInput
from app.platform.i18n import N_
from app.platform.security import hash_password, verify_password
from app.platform.text import plain, storable
from app.platform.uow import complete

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_COMMON_FILE = Path(__file__).with_name("common_passwords.txt")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of most common passwords (read once)."""
    lines = _COMMON_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line and not line.startswith("#"))


_RUNS = (
    "0123456789" * 3,
    "9876543210" * 3,
    "abcdefghijklmnopqrstuvwxyz",
    "qwertyuiopasdfghjklzxcvbnm",
)


def _guessable(lowered: str) -> bool:
    """On the list, a repeat of a listed word, a listed word plus digits, or a keyboard run."""
    common = common_passwords()
    core = lowered.rstrip("0123456789!@#$%^&*.?-_ ")
    if lowered in common or len(set(lowered)) < 4 or (len(core) >= 4 and core in common):
        return True
    for size in range(1, len(lowered) // 2 + 1):
        unit = lowered[:size]
        if len(lowered) % size == 0 and unit * (len(lowered) // size) == lowered:
            return size < 4 or unit in common
    return any(lowered in run for run in _RUNS)


def password_problem(password: str, email: str = "") -> str | None:
    """Why this password is not acceptable, or None (ASVS: length and a deny list)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return N_("Use at least %(n)s characters.", n=MIN_PASSWORD_LENGTH)
    if len(password) > MAX_PASSWORD_LENGTH:
        return N_("Use at most %(n)s characters.", n=MAX_PASSWORD_LENGTH)
    if _guessable(password.lower()):
        return N_("This password is too common; please choose another.")
    lowered = password.lower()
    local = normalize_email(email).split("@", 1)[0]
    if len(local) >= 4 and local in lowered:
        return N_("Please don't build the password from your email address.")
    return None


def normalize_email(email: str) -> str:
    return email.strip().lower()


def validate_signup(email: str, password: str, name: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not name.strip() or not plain(name):
        errors.append(FieldError("name", N_("Please tell us your name.")))
    elif len(name.strip()) > 100:
        errors.append(FieldError("name", N_("Please use at most 100 characters.")))
    normalized = normalize_email(email)  # may grow: "İ".lower() is two characters
    if len(normalized) > 254 or not _EMAIL.match(normalized) or not storable(normalized):
        errors.append(FieldError("email", N_("Please enter a valid email address.")))
    if problem := password_problem(password, email):
        errors.append(FieldError("password", problem))
    return errors


async def sign_up(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    name: str,
    role: Role = Role.customer,
    locale: str | None = None,
) -> User:
    """Create an account; 422 on bad input, 409 when the email is taken."""
    errors = validate_signup(email, password, name)
    if errors:
        raise InvalidInput(errors)
    user_id = await session.scalar(
        insert(User)
        .values(
            id=uuid.uuid4(),
            email=normalize_email(email),
            name=name.strip(),
            password_hash=hash_password(password),
            role=role.value,
            locale=locale,
        )
        .on_conflict_do_nothing(index_elements=[User.email])
        .returning(User.id)
    )
    if user_id is None:
        raise Conflict(N_("an account with this email already exists"))
    await complete(session)
    user = await session.get(User, user_id)
    if user is None:
        raise RuntimeError(f"account {user_id} is gone right after it was created")
    return user


async def authenticate(session: AsyncSession, email: str, password: str) -> User | None:
    """The user for these credentials, or None; a wrong email costs the same as a wrong password."""
    email = normalize_email(email)
    user = None
    if storable(email) and len(email) <= 254:
        user = await session.scalar(select(User).where(User.email == email))
    if not verify_password(user.password_hash if user else None, password):
        return None
    return user


async def ensure_user(
    session: AsyncSession, *, email: str, password: str, name: str, role: Role
) -> User:
    """Create the user unless the email exists (used for demo accounts)."""
    existing = await session.scalar(select(User).where(User.email == normalize_email(email)))
    if existing is not None:
        return existing
    return await sign_up(session, email=email, password=password, name=name, role=role)


async def change_password(
    session: AsyncSession, user_id: uuid.UUID, current: str, new: str
) -> None:
    """Change a password; every session and API token issued before now stops working
    (the caller re-issues its own)."""
    user = await session.get(User, user_id, with_for_update=True)
    if user is None or not verify_password(user.password_hash, current):
        raise InvalidInput.single("current_password", N_("That is not your current password."))
    if problem := password_problem(new, user.email):
        raise InvalidInput.single("new_password", problem)
    user.password_hash = hash_password(new)
    user.password_changed_at = user.sessions_valid_after = utcnow()
    await complete(session)


async def sign_out_everywhere(session: AsyncSession, user_id: uuid.UUID) -> None:
    """End every browser session and API token of the account, this one included."""
    await session.execute(
        update(User).where(User.id == user_id).values(sessions_valid_after=utcnow())
    )
    await complete(session)


#: built once, the id bound, and run on the driver (``app.platform.driver``): this runs on
#: every signed-in request
_STANDING = Statement(
    select(User.role, User.sessions_valid_after, User.name).where(User.id == bindparam("user_id"))
)


async def standing(session: AsyncSession, user_id: uuid.UUID) -> AccountStanding | None:
    """The account's current role and since when its sign-ins count (None: no account).
    Read on every signed-in request, so a demotion or revocation takes effect at once."""
    row = await _STANDING.fetchrow(session, {"user_id": user_id})
    if row is None:
        return None
    return AccountStanding(
        role=row["role"], valid_after=row["sessions_valid_after"], name=row["name"]
    )


async def choose_language(session: AsyncSession, user_id: uuid.UUID, locale: str) -> None:
    """Remember the language this person picked with the switch, on every device."""
    user = await session.get(User, user_id)
    if user is not None:
        user.locale = locale
        await complete(session)


async def display_name(session: AsyncSession, user_id: uuid.UUID) -> str | None:
    """The name a person gave at sign-up (the kitchen calls the order by it)."""
    return await session.scalar(select(User.name).where(User.id == user_id))


async def display_names(session: AsyncSession, user_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Names for many accounts at once (the audit trail says who did what)."""
    if not user_ids:
        return {}
    rows = await session.execute(select(User.id, User.name).where(User.id.in_(user_ids)))
    return {user_id: name for user_id, name in rows}
