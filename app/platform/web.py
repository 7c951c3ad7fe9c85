"""Web plumbing shared by every context's routes: who is calling, rendering, errors.

Two inbound adapters share the same services: HTML pages (server-side session in Redis,
CSRF) and the JSON API under ``/api`` (bearer JWT). Domain errors become JSON for the
API and a page or redirect for browsers.
"""

from __future__ import annotations

import contextlib
import html
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import SplitResult, quote, urlsplit

from asyncpg.exceptions import (
    OperatorInterventionError,
    PostgresConnectionError,
    TooManyConnectionsError,
)
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import ParameterKwarg
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.utils.empty import value_or_default
from litestar.utils.scope.state import ScopeState
from redis.exceptions import RedisClusterException, RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout

from app.platform import access, headers, i18n
from app.platform.errors import (
    DomainError,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    SignInEnded,
    Unavailable,
)
from app.platform.i18n import N_
from app.platform.security import Principal
from app.platform.settings import Settings

log = logging.getLogger("pizzeria.web")

SESSION_USER = "user_id"
SESSION_ROLE = "role"
SESSION_NAME = "name"


# -- dependencies ---------------------------------------------------------------------


def session_principal(request: Request[Any, Any, Any]) -> Principal | None:
    """The guard's checked principal when the route demanded one, else what the session
    claims (only used to show the navigation)."""
    guarded = request.scope.get("state", {}).get(access.PRINCIPAL)
    return guarded if guarded is not None else access.session_principal(request)


def _guarded(request: Request[Any, Any, Any]) -> Principal:
    """The principal the access guard established for this request."""
    principal = request.scope.get("state", {}).get(access.PRINCIPAL)
    if principal is None:  # a handler asked for a principal its rule does not demand
        raise NotAuthenticated(N_("Please sign in."))
    return principal  # type: ignore[no-any-return]


async def provide_customer(request: Request[Any, Any, Any]) -> Principal:
    """The signed-in browser user (the ``customer`` rule guarantees one)."""
    return _guarded(request)


async def provide_staff(request: Request[Any, Any, Any]) -> Principal:
    """A staff member or admin (the ``staff`` rule guarantees it)."""
    principal = _guarded(request)
    if not principal.is_staff:
        raise Forbidden(N_("This page is for staff."))
    return principal


async def provide_admin(request: Request[Any, Any, Any]) -> Principal:
    principal = _guarded(request)
    if principal.role != "admin":
        raise Forbidden(N_("This page is for admins."))
    return principal


async def provide_api_principal(request: Request[Any, Any, Any]) -> Principal:
    """The caller of a JSON API route (bearer token checked by the ``api`` rule)."""
    return _guarded(request)


async def provide_api_staff(request: Request[Any, Any, Any]) -> Principal:
    principal = _guarded(request)
    if not principal.is_staff:
        raise Forbidden(N_("Staff role required."))
    return principal


# -- rendering ------------------------------------------------------------------------


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def wants_json(request: Request[Any, Any, Any]) -> bool:
    path = request.url.path
    return path in ("/api", "/webhooks") or path.startswith(("/api/", "/webhooks/", "/health"))


def page(
    request: Request[Any, Any, Any],
    template: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Template:
    """Render a full page (or, for HTMX, the same template's fragment when asked)."""
    viewer = session_principal(request)
    basket = request.session.get("basket", {}) if request.scope.get("session") else {}
    context.setdefault("viewer", viewer)
    context.setdefault("viewer_name", request.session.get(SESSION_NAME) if viewer else None)
    context.setdefault("basket_count", sum(int(q) for q in basket.values()))
    # no session in the scope: it could not be read (its Redis away, a 503) or this
    # answer came before it (a 404): the header then claims neither "signed in" nor
    # "signed out, basket empty", either of which may be untrue
    context.setdefault("session_known", "session" in request.scope)
    context.setdefault("shop", request.app.state.settings.shop)
    context.setdefault("here", _here(request))
    return Template(
        template_name=template,
        context=context,
        status_code=status_code,
        media_type=MediaType.HTML,
        headers=headers,
    )


def _here(request: Request[Any, Any, Any]) -> str:
    """This page's path and query, where the language switch brings the visitor back."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


#: stands for the viewer's CSRF token in a fragment rendered once for many viewers
_CSRF_SLOT = f"csrf-slot-{secrets.token_hex(12)}"


class Fragment:
    """A template rendered outside the response cycle (SSE), with the CSRF input a
    ``Template`` response would give it: any form that arrives through the live stream
    must carry a valid token, or clicking it answers 403.

    A live page's fragment is rendered once for all its viewers in the process
    (``for_everyone``, the token a slot) and each viewer's copy gets its own token
    (``for_viewer``): the same HTML, by string replacement instead of a render each."""

    def __init__(self, request: Request[Any, Any, Any], template: Any) -> None:
        self.request = request
        self.template = template

    def render(self, **context: Any) -> str:
        return self.for_viewer(self.for_everyone(**context))

    def for_everyone(self, **context: Any) -> str:
        """The fragment for any viewer: no request in its context, the token a slot."""
        csrf_input = f'<input type="hidden" name="_csrf_token" value="{_CSRF_SLOT}" />'
        return str(self.template.render(csrf_input=csrf_input, **context))

    def for_viewer(self, rendered: str) -> str:
        """``for_everyone``'s HTML with this viewer's CSRF token."""
        return rendered.replace(_CSRF_SLOT, html.escape(csrf_token_of(self.request)))


def csrf_token_of(request: Request[Any, Any, Any]) -> str:
    """The CSRF token the middleware established for this request (cookie or new)."""
    return value_or_default(ScopeState.from_scope(request.scope).csrf_token, "")


def fragment(request: Request[Any, Any, Any], name: str) -> Fragment:
    """A template to render outside the response cycle (SSE), CSRF input included."""
    engine = request.app.template_engine
    if engine is None:
        raise RuntimeError("templates are configured in create_app()")
    return Fragment(request, engine.get_template(name))


def redirect(request: Request[Any, Any, Any], to: str) -> Response[Any]:
    """A redirect that also works for HTMX (which would otherwise swap the target page in)."""
    if is_htmx(request):
        return Response(content=None, status_code=204, headers={"HX-Redirect": to})
    return Redirect(path=to, status_code=303)


#: session key: a message kept for the next page a person sees, by that page's path
NOTICES = "notices"


class Notice(str):
    """A notice kept for a page (``notice_for``). ``until_changed``: it speaks of the
    state the page showed (a refused cancel: "the kitchen has started"), so the page drops
    it once a live update shows that state gone (``static/js/order.js``); other notices
    ("this is the order you placed") stay until the page is left."""

    until_changed: bool

    def __new__(cls, text: str, until_changed: bool = False) -> Notice:
        made = super().__new__(cls, text)
        made.until_changed = until_changed
        return made


def notice_for(
    request: Request[Any, Any, Any], path: str, message: str, *, until_changed: bool = False
) -> None:
    """Keep ``message`` (in the person's language) for the page at ``path``: a refusal
    answered with a redirect to that page, so reloading it never sends the form again,
    and shown there outside anything a live update re-renders."""
    notices = dict(request.session.get(NOTICES) or {})
    text = i18n.translate(message)
    notices[path] = {"text": text, "until_changed": True} if until_changed else text
    request.session[NOTICES] = notices


def take_notice(request: Request[Any, Any, Any], path: str) -> Notice | None:
    """The message kept for the page at ``path``, once."""
    notices = request.session.get(NOTICES) if isinstance(request.session, dict) else None
    if not notices or path not in notices:
        return None
    rest = {key: text for key, text in notices.items() if key != path}
    if rest:
        request.session[NOTICES] = rest
    else:
        del request.session[NOTICES]
    kept = notices[path]
    if isinstance(kept, dict):
        return Notice(kept["text"], until_changed=True)
    return Notice(kept)


def configure_templates(engine: JinjaTemplateEngine, settings: Settings) -> None:
    """Templates speak the request's language (gettext), show money per currency and
    locale, and times in the shop's time zone."""
    i18n.install(engine.engine, settings.shop.timezone)


# -- errors ---------------------------------------------------------------------------


def _json_error(exc: DomainError) -> Response[Any]:
    body: dict[str, Any] = {
        "status_code": exc.status_code,
        "code": exc.code,
        "detail": str(exc.detail),
    }
    headers: dict[str, str] = {}
    errors = getattr(exc, "errors", None)
    if errors:
        body["errors"] = [{"field": api_name(e.field), "message": str(e.message)} for e in errors]
        # the detail names them as the errors do, not in the service's words
        body["detail"] = "; ".join(f"{e['field']}: {e['message']}" for e in body["errors"])
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if isinstance(exc, NotAuthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return Response(content=body, status_code=exc.status_code, headers=headers)


#: fields the API takes in a header, named as the header
HEADER_FIELDS = {"idempotency_key": "Idempotency-Key"}
_SNAKE = re.compile(r"_([a-z0-9])")


def api_name(field: str) -> str:
    """A field as the JSON API spells it: services speak the domain's words
    (``items[0].pizza_id``, ``card_number``), the API camelCase (``items[0].pizzaId``,
    ``cardNumber``), and a header keeps its own name (``Idempotency-Key``)."""
    return HEADER_FIELDS.get(field) or _SNAKE.sub(lambda m: m.group(1).upper(), field)


_LOCAL_PATH = re.compile(r"/(?![/\\])[^\\\x00-\x20\x7f]*")


def local_path(target: str | None) -> str | None:
    """``target`` when it is a path on this site, else None: no ``//host``, no
    ``/\\host`` (browsers read a backslash as a slash), no scheme, no control characters
    or spaces. Where a visitor may be sent next (``?next=``, a Referer)."""
    if target and _LOCAL_PATH.fullmatch(target):
        return target
    return None


#: a form sent while these answer can simply be sent again a little later
TRY_AGAIN_STATUSES = frozenset({429, 503})


def form_to_return_to(request: Request[Any, Any, Any], status_code: int) -> str | None:
    """The page whose form was just sent, when it is worth going back to: the error says
    "try again" (a dependency away, a rate limit). Going back in history brings the form
    back as the person left it, with what they typed (the browser keeps it); the session
    that would keep it for us may be the very thing that is away."""
    if request.method != "POST" or status_code not in TRY_AGAIN_STATUSES:
        return None
    referer = urlsplit(request.headers.get("referer", ""))
    if (referer.scheme, referer.netloc) != (request.url.scheme, request.url.netloc):
        return None
    return _local_part(referer)


def page_to_return_to(request: Request[Any, Any, Any]) -> str:
    """Where signing in should lead back to: the page itself. An htmx request asks for a
    piece of it (``/orders/<id>/live``, the board's columns), and sending a person there
    after signing in showed a bare fragment; htmx names the page (``HX-Current-URL``)."""
    if is_htmx(request):
        # only its path is taken (a proxy may have changed the scheme or host on the way)
        shown = _local_part(urlsplit(request.headers.get("hx-current-url", "")))
        if shown is not None:
            return shown
    return request.url.path


def _local_part(url: SplitResult) -> str | None:
    """The path and query of ``url`` when they name a page on this site (``local_path``)."""
    return local_path(url.path + (f"?{url.query}" if url.query else ""))


def error_page(
    request: Request[Any, Any, Any],
    status_code: int,
    message: Any,
    headers: dict[str, str] | None = None,
    field: str | None = None,
) -> Template:
    """``message``: one message, or a list of them (each translated); ``field``: the form
    field a single message is about, for the page's script to put the message next to
    that field when the form was sent by htmx (``static/js/requests.js``)."""
    return page(
        request,
        "error.html",
        status_code=status_code,
        headers=headers,
        message=message,
        field=field,
        back=form_to_return_to(request, status_code),
    )


def domain_error_handler(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    if wants_json(request):
        return _json_error(exc)
    if isinstance(exc, NotAuthenticated):
        ended = "&ended=1" if isinstance(exc, SignInEnded) else ""
        return redirect(request, f"/login?next={quote(page_to_return_to(request))}{ended}")
    retry_after = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if isinstance(exc, InvalidInput) and len(exc.errors) == 1:
        # a person reads the message, not "note: …" (the API's detail names the field)
        [error] = exc.errors
        return error_page(request, exc.status_code, error.message, headers, field=error.field)
    if isinstance(exc, InvalidInput) and exc.errors:
        return error_page(request, exc.status_code, [e.message for e in exc.errors], headers)
    return error_page(request, exc.status_code, exc.detail, headers)


def validation_error_handler(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[Any]:
    """Litestar's 400 for a malformed body becomes a 422 naming each field, a query
    parameter or header by the name the caller sent (Litestar names it as the handler's
    argument: ``to`` would read ``until``)."""
    sent_as = _sent_names(request)
    errors = []
    for item in exc.extra or []:
        if isinstance(item, dict):
            message = str(item.get("message"))
            key = str(item.get("key") or "")
            if item.get("source") != "body":  # a body field keeps its own name
                key = sent_as.get(key, key)
            field = _field_of(key, message)
            errors.append({"field": field, "message": message})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or str(exc.detail)
    return Response(
        content={"status_code": 422, "code": "invalid_input", "detail": detail, "errors": errors},
        status_code=422,
    )


_MISSING = re.compile(r"missing required field `([^`]+)`")


def _sent_names(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The route's parameters named otherwise on the wire, by their argument's name."""
    try:
        parameters = request.route_handler.parsed_fn_signature.parameters
    except Exception:  # no route (a 404's own errors): this must never turn a 422 into a 500
        return {}
    return {
        name: kwarg.name
        for name, field in parameters.items()
        if isinstance(kwarg := field.kwarg_definition, ParameterKwarg) and kwarg.name
    }


def _field_of(key: str, message: str) -> str:
    """The field a validation message is about (msgspec names a missing one only in text)."""
    if missing := _MISSING.search(message):
        prefix = "" if key in {"", "data"} else f"{key}."
        return prefix + missing.group(1)
    return key if key not in {"", "data"} else "body"


#: the stable ``code`` of an error body, by HTTP status, for errors Litestar raises itself
HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

#: what a person reads on the error page for errors Litestar raises itself
HTTP_MESSAGES = {
    400: N_("That request was not understood."),
    403: N_("You may not open this page."),
    404: N_("We could not find that page."),
    405: N_("That is not possible on this page."),
    503: N_("A service we depend on is unavailable; please try again."),
}


def http_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    i18n.set_locale(i18n.locale_of(request.scope))  # a 404 never passed the middleware
    if wants_json(request) or exc.status_code == 405:
        code = HTTP_CODES.get(exc.status_code, "error" if exc.status_code < 500 else "server_error")
        return Response(
            content={"status_code": exc.status_code, "code": code, "detail": exc.detail},
            status_code=exc.status_code,
            headers=exc.headers,
        )
    message = HTTP_MESSAGES.get(exc.status_code, exc.detail)
    if exc.status_code == 403 and "CSRF" in str(exc.detail):
        message = N_("This form has expired. Please go back, reload the page and try again.")
    return error_page(request, exc.status_code, message, exc.headers)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    i18n.set_locale(i18n.locale_of(request.scope))
    request_id = headers.request_id(request.scope)
    log.exception(
        "unhandled error request_id=%s path=%s", request_id, request.url.path, exc_info=exc
    )
    message = N_("Something went wrong on our side (request id %(id)s).", id=request_id)
    if wants_json(request):
        body = {
            "status_code": 500,
            "code": "internal_error",
            "detail": str(message),
            "requestId": request_id,
        }
        return Response(content=body, status_code=500)
    return error_page(request, 500, message)


#: what PostgreSQL being away looks like when asyncpg raises it unwrapped (a connect
#: while it restarts, shuts down, or has no connection left)
POSTGRES_AWAY: tuple[type[Exception], ...] = (
    PostgresConnectionError,
    OperatorInterventionError,
    TooManyConnectionsError,
)


def database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says PostgreSQL cannot be reached right now (so the request may
    simply be tried again: 503), not that our SQL or data is wrong (a bug: 500)."""
    if isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    ):
        return True
    # a pool with no connection free in time, a connect refused, or (asyncpg's own
    # ``TimeoutError``) a statement or connect PostgreSQL did not answer in time
    if isinstance(exc, SQLAlchemyTimeout | ConnectionError | TimeoutError):
        return True
    # SQLAlchemy wraps some of asyncpg's refusals in a bare DBAPIError, and wraps neither
    # a connect's ``OSError`` (``_raised_connecting``): look at the cause
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, POSTGRES_AWAY) or (
            isinstance(seen, OSError) and _raised_connecting(seen)
        ):
            return True
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return False


def _raised_connecting(exc: BaseException) -> bool:
    """True when asyncpg raised ``exc`` while connecting. Neither asyncpg nor SQLAlchemy
    wraps an operating system's refusal: a PostgreSQL reached through its Unix socket
    (``pizzeria up``'s embedded one) that is stopped or restarting has removed the socket
    file, so the connect fails with ``FileNotFoundError``, not ``ConnectionRefusedError``;
    the same error from anywhere else (a missing template) is still a bug."""
    frame = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_globals.get("__name__") == "asyncpg.connect_utils":
            return True
        frame = frame.tb_next
    return False


@contextlib.asynccontextmanager
async def database_errors_as_unavailable() -> AsyncIterator[None]:
    """Around work whose page can say "try again" itself (the checkout keeps the basket
    and what was typed): PostgreSQL being away becomes ``Unavailable``."""
    try:
        yield
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        log.warning("database unavailable: %s", type(exc).__name__)
        raise Unavailable(
            N_("A service we depend on is unavailable; please try again."), 2
        ) from exc


#: a route's ``opt`` key: ``keep(request, form)`` keeps what the person typed in a form
#: (in their session) when a dependency fails before the handler could (the access check
#: reads the account from PostgreSQL first): the next visit of the form starts from it
KEEP_TYPED = "keep_typed"


def keep_typed(keep: Callable[[Request[Any, Any, Any], dict[str, str]], None]) -> dict[str, Any]:
    """``opt`` for a form's POST handler: ``@post("/", opt=keep_typed(remember))``."""
    return {KEEP_TYPED: keep}


def _keep_typed_input(request: Request[Any, Any, Any]) -> None:
    """Hand the submitted form (the CSRF check parsed it already) to the route's keeper.
    Best effort: a page that cannot keep it still answers 503."""
    handler = request.scope.get("route_handler")
    keep = handler.opt.get(KEEP_TYPED) if handler is not None else None
    form = ScopeState.from_scope(request.scope).form
    if not callable(keep) or not isinstance(form, dict) or "session" not in request.scope:
        return
    typed = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        keep(request, typed)
    except Exception:
        log.warning("keeping the typed input of %s failed", request.url.path, exc_info=True)


def unavailable_dependency_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[Any]:
    """PostgreSQL or Redis could not be reached (a restart, a failover, an exhausted pool):
    503 with ``Retry-After``, never a 500 - the request can simply be tried again. What a
    form's sender typed is kept for their next try where the form asks for it."""
    if not database_unavailable(exc) and not isinstance(exc, RedisError | RedisClusterException):
        return internal_error_handler(request, exc)
    # a bare TimeoutError is asyncpg's, as far as we know: its traceback shows where it
    # came from should one of ours ever get here
    log.warning(
        "dependency unavailable on %s: %s: %s",
        request.url.path,
        type(exc).__name__,
        str(exc)[:300],
        exc_info=type(exc) is TimeoutError,
    )
    _keep_typed_input(request)
    return domain_error_handler(
        request, Unavailable(N_("A service we depend on is unavailable; please try again."), 2)
    )
