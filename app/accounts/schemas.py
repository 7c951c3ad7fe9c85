"""Accounts API shapes (camelCase on the wire)."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

from app.accounts.service import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254)]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
#: a password being chosen: the schema says what ``accounts.service`` checks, so a client
#: reading the OpenAPI document knows the rule before it is refused
NewPassword = Annotated[
    str, msgspec.Meta(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class SignupRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=False):
    email: Email
    password: NewPassword
    name: Name


class UserView(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    email: str
    name: str


class TokenForm(msgspec.Struct):
    username: str
    password: str


class TokenView(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int


class PasswordChange(msgspec.Struct, rename="camel"):
    current_password: Password
    new_password: NewPassword
