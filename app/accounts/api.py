"""Accounts JSON API: sign up and exchange a password for a bearer token."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.params import Body
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service
from app.accounts.schemas import SignupRequest, TokenForm, TokenView, UserView
from app.platform.errors import NotAuthenticated
from app.platform.security import Principal, issue_token


class AuthApi(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @post("/signup", status_code=201)
    async def signup(self, data: SignupRequest, db: AsyncSession) -> UserView:
        user = await service.sign_up(db, email=data.email, password=data.password, name=data.name)
        return UserView(id=user.id, email=user.email, name=user.name)

    @post("/token", status_code=200)
    async def token(
        self,
        data: Annotated[TokenForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
        db: AsyncSession,
        state: State,
    ) -> TokenView:
        user = await service.authenticate(db, data.username, data.password)
        if user is None:
            raise NotAuthenticated("wrong email or password")
        token, ttl = issue_token(state.settings, Principal(user_id=user.id, role=user.role))
        return TokenView(access_token=token, token_type="bearer", expires_in=ttl)
