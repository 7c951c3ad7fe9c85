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
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from app.platform.errors import Forbidden, NotAuthenticated
from app.platform.i18n import N_
from app.platform.security import Principal, read_token

RULES = ("public", "customer", "staff", "admin", "api", "api-staff")
PRINCIPAL = "principal"


def access(rule: str) -> dict[str, Any]:
    """``opt`` for a handler or controller: ``@get("/", opt=access("staff"))``."""
    assert rule in RULES, rule
    return {"access": rule}


def rule_of(handler: BaseRouteHandler) -> str | None:
    rule = handler.opt.get("access")
    if rule is None and handler.fn.__module__.startswith("litestar."):
        return "public"  # the framework's own routes: OpenAPI schema
    return rule if isinstance(rule, str) else None


def session_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    session = connection.scope.get("session")
    user_id = session.get("user_id") if isinstance(session, dict) else None
    if not user_id:
        return None
    return Principal(user_id=uuid.UUID(user_id), role=str(session.get("role", "")))  # type: ignore[union-attr]


async def bearer_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """A valid token whose account still accepts it (not issued before a password change)."""
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticated(N_("Missing bearer token."))
    state = connection.app.state
    principal = read_token(state.settings, token.strip())
    async with state.session_factory() as session:
        changed_at = await state.token_checker(session, principal.user_id)
    if changed_at is None or (principal.issued_at or 0) < changed_at.timestamp():
        raise NotAuthenticated(N_("This token is no longer valid; please sign in again."))
    return principal


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
        found = session_principal(connection)
        if found is None:
            raise NotAuthenticated(N_("Please sign in."))
        principal = found
    if rule in ("staff", "api-staff") and not principal.is_staff:
        raise Forbidden(N_("Staff role required."))
    if rule == "admin" and principal.role != "admin":
        raise Forbidden(N_("Admin role required."))
    connection.scope.setdefault("state", {})[PRINCIPAL] = principal
