"""Access rules: every route declares who may call it, and one guard enforces it.

A handler (or its controller) says ``opt={"access": RULE}``. The guard runs before any
parameter or body is read, so an anonymous caller gets 401 (API) or the sign-in page
(HTML) whatever they sent. A route of ours with no rule is refused: forgetting a rule
can only lock a route, never open it (and the authorization matrix test fails).

Rules:
- ``public``: anyone (menu, sign-in, health, static files, the partner webhook, which
  checks its own signature);
- ``customer``: a signed-in browser (any role); the pages themselves show only the
  customer's own orders, refunds and coupons (404 otherwise);
- ``staff`` / ``admin``: a signed-in browser with that role (admins are staff too);
- ``api``: a valid bearer token; ``api-staff``: a bearer token with the staff role.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Empty

from app.platform.db import lookup
from app.platform.errors import Forbidden, NotAuthenticated, SignInEnded
from app.platform.i18n import N_
from app.platform.security import Principal, read_token

RULES = ("public", "customer", "staff", "admin", "api", "api-staff")
PRINCIPAL = "principal"


def access(rule: str) -> dict[str, Any]:
    """``opt`` for a handler or controller: ``@get("/", opt=access("staff"))``."""
    if rule not in RULES:
        raise ValueError(f"unknown access rule {rule!r}; one of {RULES}")
    return {"access": rule}


def rule_of(handler: BaseRouteHandler) -> str | None:
    rule = handler.opt.get("access")
    if rule is None and handler.fn.__module__.startswith("litestar."):
        return "public"  # the framework's own routes: OpenAPI schema
    return rule if isinstance(rule, str) else None


SIGNED_IN_AT = "signed_in_at"


@dataclass(frozen=True)
class AccountStanding:
    """What the account says now: its role, and since when its sessions and tokens count
    (a password change or "sign out everywhere" moves that instant forward)."""

    role: str
    valid_after: datetime
    #: the name the person gave (read with the rest: placing an order needs no query)
    name: str | None = None


def session_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """Who the browser session says it is (not yet checked against the account)."""
    session = connection.scope.get("session")
    user_id = session.get("user_id") if isinstance(session, dict) else None
    if not user_id:
        return None
    return Principal(
        user_id=uuid.UUID(user_id),
        role=str(session.get("role", "")),  # type: ignore[union-attr]
        issued_at=float(session.get(SIGNED_IN_AT) or 0),  # type: ignore[union-attr]
    )


async def _current(connection: ASGIConnection[Any, Any, Any, Any], claimed: Principal) -> Principal:
    """The caller as the account is now: its current role (never the one in a token or an
    old session), refused when issued before the account's sessions were revoked."""
    state = connection.app.state
    async with lookup(state.session_factory) as session:
        standing: AccountStanding | None = await state.account_standing(session, claimed.user_id)
    if standing is None or (claimed.issued_at or 0) < standing.valid_after.timestamp():
        raise SignInEnded(N_("This sign-in is no longer valid; please sign in again."))
    return Principal(
        user_id=claimed.user_id,
        role=standing.role,
        issued_at=claimed.issued_at,
        name=standing.name,
    )


async def bearer_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """A valid token whose account still accepts it, with the account's current role."""
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticated(N_("Missing bearer token."))
    return await _current(connection, read_token(connection.app.state.settings, token.strip()))


async def browser_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The signed-in browser user; a session the account has revoked is ended here."""
    found = session_principal(connection)
    if found is None:
        raise NotAuthenticated(N_("Please sign in."))
    try:
        return await _current(connection, found)
    except NotAuthenticated:
        connection.scope["session"] = Empty
        raise


async def access_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    rule = rule_of(handler)
    if rule == "public":
        return
    if rule not in RULES:  # no rule, or a misspelt one: locked, never open
        raise Forbidden(N_("This route has no valid access rule."))
    if rule.startswith("api"):
        principal = await bearer_principal(connection)
    else:
        principal = await browser_principal(connection)
    if rule in ("staff", "api-staff") and not principal.is_staff:
        raise Forbidden(N_("Staff role required."))
    if rule == "admin" and principal.role != "admin":
        raise Forbidden(N_("Admin role required."))
    connection.scope.setdefault("state", {})[PRINCIPAL] = principal
