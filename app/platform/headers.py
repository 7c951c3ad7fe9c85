"""Security headers on every response (pages, API, static files, errors) and a request id.

The Content-Security-Policy allows our own scripts and styles only: no inline script, no
eval, no third-party origin, and no framing. The request id travels back in
``X-Request-ID`` and into the log line of any unexpected error, so a customer's report
can be matched to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

from app.platform.access import PRINCIPAL
from app.platform.settings import Settings

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
REQUEST_ID = "request_id"


def security_headers(settings: Settings) -> list[tuple[str, str]]:
    headers = [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
        ("x-frame-options", "DENY"),
        ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()"),
        ("cross-origin-opener-policy", "same-origin"),
    ]
    if settings.security.https:
        headers.append(("strict-transport-security", "max-age=63072000; includeSubDomains"))
    return headers


def security_headers_hook(settings: Settings) -> Callable[[Message, Scope], Awaitable[None]]:
    """A Litestar ``before_send`` hook: it sees every response, 404s and static files too."""
    extra = security_headers(settings)

    async def before_send(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = MutableScopeHeaders.from_message(message)
        for name, value in extra:
            headers[name] = value
        headers["x-request-id"] = request_id(scope)
        if is_private(scope):
            headers["cache-control"] = "no-store"

    return before_send


def is_private(scope: Scope) -> bool:
    """A signed-in page, a private API answer (and so any CSV export), or a page showing
    someone's session (their basket): never kept by a browser or a shared cache."""
    session = scope.get("session")
    return (
        PRINCIPAL in scope.get("state", {})
        or (isinstance(session, dict) and bool(session))
        or any(name == b"authorization" for name, _ in scope.get("headers", []))
    )


def request_id(scope: Scope) -> str:
    """This request's id, made on first use (the error handler logs it, the response carries it)."""
    state = scope.setdefault("state", {})
    if REQUEST_ID not in state:
        state[REQUEST_ID] = uuid.uuid4().hex[:16]
    return str(state[REQUEST_ID])
