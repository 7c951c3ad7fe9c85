"""CSRF protection for the HTML pages, bound to the server-side session.

Litestar's built-in middleware compares a form token with a cookie (double submit): a
sibling site that can plant cookies can plant both. Here, once someone signs in, the
token lives in their server-side session (a new one at every sign-in) and a form must
carry exactly that token; the cookie only hands it to the page. Anonymous forms (sign
in, sign up, basket) still compare with the cookie. On top of the token, a state-changing
request that a browser marks as cross-site (``Sec-Fetch-Site``) or that comes from
another ``Origin`` is refused before anything else runs.

The JSON API (bearer tokens, no cookies) and the partner webhook (signed) are exempt.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from litestar.connection import Request
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import RequestEncodingType, ScopeType
from litestar.exceptions import PermissionDeniedException
from litestar.middleware.csrf import CSRF_SECRET_LENGTH, generate_csrf_hash, generate_csrf_token
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from app.platform.settings import Settings

SESSION_TOKEN = "csrf"
FORM_FIELD = "_csrf_token"
HEADER = "x-csrftoken"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
EXEMPT = ("/api/", "/webhooks/", "/static/", "/health/")
_SAME_SITE = frozenset({"same-origin", "none"})


def new_token(settings: Settings) -> str:
    """A fresh token (random part + HMAC under ``SECRET_KEY``), e.g. at sign-in."""
    return generate_csrf_token(settings.security.secret_key)


def cookie_name(settings: Settings) -> str:
    return "__Host-pizzeria_csrf" if settings.security.https else "pizzeria_csrf"


class SessionCSRFMiddleware:
    """Runs inside the session middleware, so it can read the session's token."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.secret = settings.security.secret_key
        self.cookie = cookie_name(settings)
        self.public_host = urlsplit(settings.public_url).netloc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"].startswith(EXEMPT):
            await self.app(scope, receive, send)
            return
        request: Request[Any, Any, Any] = Request(scope, receive)
        cookie = request.cookies.get(self.cookie)
        bound = self._bound(scope)
        if request.method in SAFE_METHODS:
            token = bound or (cookie if cookie and self._valid(cookie) else None)
            token = token or generate_csrf_token(self.secret)
        else:
            if not self._same_site(request):
                raise PermissionDeniedException("cross-site request refused")
            token = await self._submitted(request)
            expected = bound or cookie
            if not (token and expected and self._valid(token) and _equal(token, expected)):
                raise PermissionDeniedException("CSRF token verification failed")
        ScopeState.from_scope(scope).csrf_token = token
        await self.app(scope, receive, self._sending(scope, send, cookie, token))

    def _bound(self, scope: Scope) -> str | None:
        session = scope.get("session")
        value = session.get(SESSION_TOKEN) if isinstance(session, dict) else None
        return value if isinstance(value, str) else None

    def _valid(self, token: str) -> bool:
        """Made by us (its HMAC checks out), whatever it is compared with."""
        if len(token) <= CSRF_SECRET_LENGTH:
            return False
        head, mac = token[:CSRF_SECRET_LENGTH], token[CSRF_SECRET_LENGTH:]
        return _equal(mac, generate_csrf_hash(token=head, secret=self.secret))

    def _same_site(self, request: Request[Any, Any, Any]) -> bool:
        """Fetch metadata first (modern browsers), then ``Origin``; a client that sends
        neither (no browser) still needs the token."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in _SAME_SITE:
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        host = urlsplit(origin).netloc
        return bool(host) and host in {request.headers.get("host"), self.public_host}

    async def _submitted(self, request: Request[Any, Any, Any]) -> str | None:
        token = request.headers.get(HEADER)
        content_type, _ = request.content_type
        if not token and content_type in {
            RequestEncodingType.URL_ENCODED,
            RequestEncodingType.MULTI_PART,
        }:
            value = (await request.form()).get(FORM_FIELD)
            token = value if isinstance(value, str) else None
        return token

    def _sending(self, scope: Scope, send: Send, cookie: str | None, token: str) -> Send:
        """Hand the page its token in the cookie: the session's (a sign-in made a new one)
        or the anonymous one."""

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                current = self._bound(scope) or token
                if current != cookie:
                    self._set_cookie(message, current)
            await send(message)

        return sending

    def _set_cookie(self, message: Message, token: str) -> None:
        https = self.settings.security.https
        value = Cookie(
            key=self.cookie,
            value=token,
            path="/",
            secure=https,
            httponly=False,
            samesite="lax",
        ).to_header(header="")
        MutableScopeHeaders.from_message(message).add("set-cookie", value)


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))
