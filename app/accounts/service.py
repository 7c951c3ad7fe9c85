"""Accounts use cases: sign up, authenticate, create users from the command line."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role, User
from app.platform.errors import Conflict, FieldError, InvalidInput
from app.platform.security import hash_password, verify_password

MIN_PASSWORD_LENGTH = 12
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def validate_signup(email: str, password: str, name: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not name.strip():
        errors.append(FieldError("name", "Please tell us your name."))
    elif len(name.strip()) > 100:
        errors.append(FieldError("name", "Please use at most 100 characters."))
    if not _EMAIL.match(normalize_email(email)) or len(email) > 254:
        errors.append(FieldError("email", "Please enter a valid email address."))
    if len(password) < MIN_PASSWORD_LENGTH:
        errors.append(FieldError("password", f"Use at least {MIN_PASSWORD_LENGTH} characters."))
    elif len(password) > 1024:
        errors.append(FieldError("password", "Use at most 1024 characters."))
    return errors


async def sign_up(
    session: AsyncSession, *, email: str, password: str, name: str, role: Role = Role.customer
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
        )
        .on_conflict_do_nothing(index_elements=[User.email])
        .returning(User.id)
    )
    if user_id is None:
        raise Conflict("an account with this email already exists")
    await session.commit()
    user = await session.get(User, user_id)
    assert user is not None
    return user


async def authenticate(session: AsyncSession, email: str, password: str) -> User | None:
    """The user for these credentials, or None; a wrong email costs the same as a wrong password."""
    user = await session.scalar(select(User).where(User.email == normalize_email(email)))
    if not verify_password(user.password_hash if user else None, password):
        return None
    return user


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def ensure_user(
    session: AsyncSession, *, email: str, password: str, name: str, role: Role
) -> User:
    """Create the user unless the email exists (used for demo accounts)."""
    existing = await session.scalar(select(User).where(User.email == normalize_email(email)))
    if existing is not None:
        return existing
    return await sign_up(session, email=email, password=password, name=name, role=role)


async def count_users(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(User)) or 0)
