"""Accounts pages: sign up, sign in, sign out (server-side session)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, URLEncodedBody
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service
from app.accounts.models import User
from app.platform import csrf, i18n, limits
from app.platform.access import SIGNED_IN_AT, access
from app.platform.bodies import SMALL_BODY
from app.platform.errors import Conflict, DomainError, InvalidInput
from app.platform.forms import form_again
from app.platform.i18n import N_, SESSION_LOCALE
from app.platform.ratelimit import TooManyRequests
from app.platform.security import Principal
from app.platform.sessions import rotate_session
from app.platform.settings import Settings
from app.platform.web import (
    SESSION_NAME,
    SESSION_ROLE,
    SESSION_USER,
    local_path,
    notice_for,
    page,
    redirect,
    take_notice,
)

#: the account page, where a password change lands
ACCOUNT = "/account"


def _safe_next(target: str | None) -> str:
    """Only a path on this site, so ``?next=`` cannot send people elsewhere."""
    return local_path(target) or "/"


def _sign_in(request: Request[Any, Any, Any], user: User) -> None:
    basket = request.session.get("basket", {}) if request.scope.get("session") else {}
    request.set_session(
        {
            SESSION_USER: str(user.id),
            SESSION_ROLE: user.role,
            SESSION_NAME: user.name,
            SESSION_LOCALE: user.locale,
            SIGNED_IN_AT: time.time(),
            csrf.SESSION_TOKEN: csrf.new_token(request.app.state.settings),
            "basket": basket,
        }
    )
    rotate_session(request)  # a new session id: whatever id the visitor had dies here


class AccountPages(Controller):
    opt = access("public")
    request_max_body_size = SMALL_BODY

    @get("/signup")
    async def signup_form(
        self, request: Request[Any, Any, Any], next: FromQuery[str | None] = None
    ) -> Any:
        return page(request, "accounts/signup.html", form={}, errors={}, next=_safe_next(next))

    @post("/signup")
    async def signup(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
        db: NamedDependency[AsyncSession],
    ) -> Any:
        form = {k: str(data.get(k, ""))[:1024] for k in ("name", "email", "password", "next")}
        try:
            await limits.signup(request)
            user = await service.sign_up(
                db,
                email=form["email"],
                password=form["password"],
                name=form["name"],
                # only a language the person picked with the switch: without one, the
                # account follows each browser's until they pick (storing the language
                # this page happened to be in would pin it, and beat a later pick)
                locale=i18n.switched_to(request.scope),
            )
        except (InvalidInput, TooManyRequests) as exc:
            return _form_again(request, "accounts/signup.html", form, exc)
        except Conflict:
            errors = {"email": N_("An account with this email exists. Sign in instead?")}
            return _form_again(request, "accounts/signup.html", form, errors)
        _sign_in(request, user)
        return redirect(request, _safe_next(form["next"]))

    @get("/login")
    async def login_form(
        self,
        request: Request[Any, Any, Any],
        next: FromQuery[str | None] = None,
        ended: FromQuery[bool] = False,
    ) -> Any:
        """``ended``: this browser's sign-in was ended by the account (a password change,
        "sign out everywhere"), which the page says, rather than asking out of the blue."""
        return page(
            request,
            "accounts/login.html",
            form={},
            errors={},
            next=_safe_next(next),
            ended=ended,
        )

    @post("/login")
    async def login(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
        db: NamedDependency[AsyncSession],
    ) -> Any:
        form = {k: str(data.get(k, ""))[:1024] for k in ("email", "password", "next")}
        try:
            await limits.signin(request, form["email"])
        except TooManyRequests as exc:
            return _form_again(request, "accounts/login.html", form, exc)
        user = await service.authenticate(db, form["email"], form["password"])
        if user is None:
            await limits.signin_failed(request, form["email"])
            errors = {"password": N_("That email and password do not match an account.")}
            return _form_again(request, "accounts/login.html", form, errors, status_code=401)
        _sign_in(request, user)
        return redirect(request, _safe_next(form["next"]))

    @get("/account", opt=access("customer"))
    async def account(
        self, request: Request[Any, Any, Any], customer: NamedDependency[Principal]
    ) -> Any:
        changed = take_notice(request, ACCOUNT) is not None  # a password change lands here
        return page(request, "accounts/account.html", errors={}, done=changed)

    @post("/account/password", opt=access("customer"))
    async def change_password(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
        db: NamedDependency[AsyncSession],
        customer: NamedDependency[Principal],
    ) -> Any:
        try:
            await service.change_password(
                db,
                customer.user_id,
                str(data.get("current_password", ""))[:1024],
                str(data.get("new_password", ""))[:1024],
            )
        except InvalidInput as exc:
            return form_again(
                request,
                "accounts/account.html",
                {},  # passwords are never shown again
                exc,
                fields=("current_password", "new_password"),
                done=False,
            )
        # Every other session of the account has just ended; this one carries on.
        request.session[SIGNED_IN_AT] = time.time()
        rotate_session(request)
        # told on the account page it is sent to: a reload there sends no form again
        notice_for(request, ACCOUNT, N_("Your password was changed."))
        return redirect(request, ACCOUNT)

    @post("/language")
    async def language(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
        db: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
    ) -> Response[Any]:
        """The header's switch: a cookie for this browser and, when signed in, the account
        (so the choice follows the person to their other devices)."""
        lang = str(data.get("lang", ""))
        if lang not in i18n.LOCALES:
            lang = i18n.current_locale()
        user_id = request.session.get(SESSION_USER) if request.scope.get("session") else None
        if user_id:
            await service.choose_language(db, uuid.UUID(user_id), lang)
            request.set_session({**request.session, SESSION_LOCALE: lang})
        response = redirect(request, _safe_next(str(data.get("next", ""))[:2000]))
        response.set_cookie(
            i18n.LOCALE_COOKIE,
            lang,
            max_age=365 * 24 * 3600,
            path="/",
            samesite="lax",
            httponly=True,
            secure=settings.security.https,
        )
        return response

    @post("/account/sign-out-everywhere", opt=access("customer"))
    async def sign_out_everywhere(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[AsyncSession],
        customer: NamedDependency[Principal],
    ) -> Response[Any]:
        """End every session and API token of the account, on every device."""
        await service.sign_out_everywhere(db, customer.user_id)
        request.clear_session()
        return redirect(request, "/login")

    @post("/logout")
    async def logout(self, request: Request[Any, Any, Any]) -> Response[Any]:
        request.clear_session()
        return redirect(request, "/")


def _form_again(
    request: Request[Any, Any, Any],
    template: str,
    form: dict[str, str],
    errors: DomainError | dict[str, str],
    status_code: int | None = None,
) -> Any:
    """Sign-up or sign-in again: what was typed (never the password), each error, and
    where to go once signed in."""
    next_page = _safe_next(form.get("next"))
    return form_again(
        request,
        template,
        form,
        errors,
        status_code=status_code,
        secret=("password",),
        next=next_page,
    )
