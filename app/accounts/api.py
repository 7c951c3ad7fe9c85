"""Accounts JSON API: sign up and exchange a password for a bearer token."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, URLEncodedBody
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service
from app.accounts.schemas import PasswordChange, SignupRequest, TokenForm, TokenView, UserView
from app.platform import limits
from app.platform.access import access
from app.platform.bodies import SMALL_BODY
from app.platform.errors import NotAuthenticated
from app.platform.i18n import N_
from app.platform.security import Principal, issue_token
from app.platform.settings import Settings


class AuthApi(Controller):
    opt = access("public")
    path = "/api/auth"
    tags = ["auth"]
    request_max_body_size = SMALL_BODY

    @post("/signup", status_code=201)
    async def signup(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[SignupRequest],
        db: NamedDependency[AsyncSession],
    ) -> UserView:
        await limits.signup(request)
        user = await service.sign_up(db, email=data.email, password=data.password, name=data.name)
        return UserView(id=user.id, email=user.email, name=user.name)

    @post("/token", status_code=200)
    async def token(
        self,
        data: URLEncodedBody[TokenForm],
        db: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        request: Request[Any, Any, Any],
    ) -> TokenView:
        """OAuth2 password grant. 401 on a wrong email or password (same answer, same time);
        429 with ``Retry-After`` when an account or a client tries too often."""
        await limits.signin(request, data.username)
        user = await service.authenticate(db, data.username, data.password)
        if user is None:
            await limits.signin_failed(request, data.username)
            raise NotAuthenticated(N_("wrong email or password"))
        token, ttl = issue_token(settings, Principal(user_id=user.id, role=user.role))
        return TokenView(access_token=token, token_type="bearer", expires_in=ttl)

    @post("/password", status_code=204, opt=access("api"))
    async def change_password(
        self,
        data: JSONBody[PasswordChange],
        db: NamedDependency[AsyncSession],
        caller: NamedDependency[Principal],
    ) -> None:
        """Change the caller's password; every token issued before stops working."""
        await service.change_password(db, caller.user_id, data.current_password, data.new_password)
