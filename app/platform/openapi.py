"""Every status an API operation can answer, documented with the error body.

Litestar documents the success answer (and a generic 400) only. Clients and contract
tests need the rest too: 401 without a valid token, 403 for the wrong role, 404 for an
id the caller may not see, 409 for a state that forbids the change, 413 for a body over
the route's limit, 422 for bad input, 429 when rate limited, 503 while a dependency is
down. ``document_errors`` adds them to each operation from its access rule, its method
and its rate limits, before the schema is first built (Litestar builds it lazily), and
marks the operations that need a bearer token with the ``bearer`` security scheme.
"""

from __future__ import annotations

import html
from typing import Any

import msgspec
from litestar import Litestar, Request
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, OAuthFlow, OAuthFlows, SecurityScheme

from app.platform.access import rule_of


class FieldErrorBody(msgspec.Struct):
    field: str
    message: str


class ErrorBody(msgspec.Struct):
    """Every error answer of the API: the status again, a stable ``code`` to branch on
    (``invalid_input``, ``not_found``, ``payment_unavailable``, …), what went wrong in
    English, and for 422 the fields at fault."""

    status_code: int
    code: str
    detail: str
    errors: list[FieldErrorBody] | None = None


DESCRIPTIONS = {
    400: "The request could not be read.",
    401: "No valid bearer token (or a wrong password, or a bad webhook signature).",
    403: "The caller's role may not do this.",
    404: "No such resource (or not the caller's).",
    409: "The resource's state does not allow this now.",
    413: "The request body is larger than this operation accepts.",
    422: "Invalid input; `errors` names each field.",
    429: "Too many requests; try again after `Retry-After` seconds.",
    503: "A partner or a dependency is unavailable; try again after `Retry-After` seconds.",
}
RATE_LIMITED = {("POST", "/api/auth/signup"), ("POST", "/api/auth/token"), ("POST", "/api/orders")}
ANSWERS_401_IN_PUBLIC = {("POST", "/api/auth/token"), ("POST", "/webhooks/courier")}
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


#: how a caller signs in, so a client generator and Swagger UI's "Authorize" know: a
#: bearer token from ``POST /api/auth/token`` (the password flow's form fields)
BEARER = "bearer"
COMPONENTS = Components(
    security_schemes={
        BEARER: SecurityScheme(
            type="oauth2",
            description="A bearer token from `POST /api/auth/token` (username, password).",
            flows=OAuthFlows(password=OAuthFlow(token_url="/api/auth/token", scopes={})),
        )
    }
)


def error_statuses(method: str, path: str, handler: HTTPRouteHandler) -> set[int]:
    """The error statuses one operation can answer."""
    codes = {400, 404, 422, 503}
    if (rule_of(handler) or "").startswith("api"):
        codes |= {401, 403}
    if (method, path) in ANSWERS_401_IN_PUBLIC:
        codes.add(401)
    if method in _WRITES:
        codes |= {409, 413}
    if (method, path.rstrip("/") or "/") in RATE_LIMITED:
        codes.add(429)
    return codes


def document_errors(app: Litestar) -> None:
    """Add the error answers to every JSON API and webhook operation of ``app``."""
    for route in app.routes:
        if not route.path.startswith(("/api/", "/webhooks/")):
            continue
        for handler in getattr(route, "route_handlers", []):
            if not isinstance(handler, HTTPRouteHandler):
                continue
            if (rule_of(handler) or "").startswith("api"):
                handler.security = [{BEARER: []}]
            for method in handler.http_methods:
                responses = dict(handler.responses or {})
                for code in sorted(error_statuses(method, route.path, handler)):
                    responses.setdefault(
                        code,
                        ResponseSpec(
                            data_container=ErrorBody,
                            description=DESCRIPTIONS[code],
                            generate_examples=False,
                        ),
                    )
                handler.responses = responses


#: Swagger UI as vendored under /static (``static/vendor/``)
SWAGGER_UI = "/static/vendor/swagger-ui-5.35.0"


class SwaggerFromStatic(SwaggerRenderPlugin):
    """The API reference page with Swagger UI from this site's own ``/static`` and no
    inline script or style: the shop's Content-Security-Policy (own origin only) holds on
    it as on every page (Litestar's page loads a CDN and starts inline, and the CSP
    blanked it), and it works without the internet."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = html.escape(str(openapi_schema["info"]["title"]))
        spec = html.escape(self.get_openapi_json_route(request))
        return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="{SWAGGER_UI}/swagger-ui.css">
  <script src="{SWAGGER_UI}/swagger-ui-bundle.js" defer></script>
  <script src="/static/js/api-docs.js" defer></script>
</head>
<body>
  <div id="swagger-container" data-spec="{spec}"></div>
</body>
</html>
""".encode()
