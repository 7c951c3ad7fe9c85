"""The authorization matrix, generated from the application's own route table.

Every (path, method) of ``create_app()`` is called by every kind of caller against the
running shop, and the answer is checked against ``expected()``, which is the access policy
written down once (see ``app/platform/access.py``). A new route is covered the moment it
exists; a route without a rule fails ``test_every_route_declares_an_access_rule``.

Path parameters point at customer A's things, so a missing ownership check shows up as a
200 where the policy says 404. Bodies are empty, so allowed callers get a 4xx answer and
nothing changes; the few routes that would change state even so (``STATE_CHANGING``) get a
random id when the caller is allowed (404 proves the call got past the access check) and
A's real, still changeable thing when the caller is not. Afterwards A's things must be as
they were.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from litestar.routes import HTTPRoute
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.main import create_app
from app.platform.access import RULES, rule_of
from app.platform.outbox import InboxRow, OutboxRow
from app.subscriptions import SUBSCRIPTIONS
from tests.support.api import (
    PASSWORD,
    auth,
    browser_session,
    delivered_order,
    file_refund,
    new_customer,
    paid_order,
    wait_for,
)
from tests.support.pipeline import eventually
from tests.support.processes import Shop

# -- the route table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as declared, e.g. /orders/{order_id:uuid}
    rule: str | None
    handler: str

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


@functools.cache
def route_table() -> tuple[Route, ...]:
    """Every (path, method) the app serves, except OPTIONS and HEAD (the framework's)."""
    routes = []
    for route in create_app().routes:  # built only to read the table; never served
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods):
                if method in ("OPTIONS", "HEAD"):
                    continue
                name = f"{handler.fn.__module__}.{handler.fn.__qualname__}"
                routes.append(Route(method, route.path, rule_of(handler), name))
    return tuple(sorted(routes, key=lambda r: (r.path, r.method)))


def test_every_route_declares_an_access_rule() -> None:
    routes = route_table()
    assert len(routes) > 50, "the route table looks empty"
    missing = [f"{r.id} ({r.handler}): {r.rule!r}" for r in routes if r.rule not in RULES]
    assert not missing, "routes without a known access rule:\n" + "\n".join(missing)


# -- the policy ---------------------------------------------------------------------------

ANONYMOUS = "anonymous"
GARBAGE = "garbage_token"  # an anonymous browser with a bearer header that is not a token
A = "customer_a"  # owns every id in the paths
A_NO_TOKEN = "customer_a_no_token"  # A's signed-in browser, no bearer: the API must refuse
B = "customer_b"
STAFF = "staff"
ADMIN = "admin"
PRINCIPALS = (ANONYMOUS, GARBAGE, A, A_NO_TOKEN, B, STAFF, ADMIN)

Expectation = set[int] | Callable[[httpx.Response], bool]


def allowed(response: httpx.Response) -> bool:
    """Past the access check: not 401/403, and no server error."""
    return response.status_code not in (401, 403) and response.status_code < 500


def sign_in_first(response: httpx.Response) -> bool:
    """A browser without a session is sent to the sign-in page (or gets 401)."""
    if response.status_code == 401:
        return True
    location = response.headers.get("location", "")
    return response.status_code in (302, 303) and location.startswith("/login")


#: Public routes that check their caller themselves: a wrong password or webhook signature.
PUBLIC_SELF_CHECKS: dict[tuple[str, str], set[int]] = {
    ("POST", "/login"): {401, 429},  # empty form: "email and password do not match"
    ("POST", "/webhooks/courier"): {401},  # no X-Courier-Signature
}


def _owned(path: str) -> bool:
    """A path naming one customer's order or refund: anyone else gets 404."""
    return "{order_id" in path or "{refund_id" in path


def expected(rule: str | None, principal: str, path: str, method: str) -> Expectation:
    """The access policy: the answer ``principal`` gets from ``method path`` (ids are A's)."""
    if rule is None:
        return {403}  # no rule: the guard refuses everyone (the route is locked, not open)
    if rule == "public":
        return PUBLIC_SELF_CHECKS.get((method, path), allowed)
    no_session = principal in (ANONYMOUS, GARBAGE)
    if rule.startswith("api"):
        if principal in (ANONYMOUS, GARBAGE, A_NO_TOKEN):
            return {401}  # a session cookie is not a bearer token
        if rule == "api-staff":
            return {403} if principal in (A, B) else allowed
        if principal == A or not _owned(path):
            return allowed
        if (
            principal in (STAFF, ADMIN)
            and method == "GET"
            and path == "/api/refunds/{refund_id:uuid}"
        ):
            return {200}  # staff may look up any refund by design
        return {404}  # someone else's order or refund leaks nothing
    if no_session:
        return sign_in_first
    if rule == "customer":
        if principal in (A, A_NO_TOKEN) or not _owned(path):
            return allowed
        return {404}
    if rule == "staff":
        return {403} if principal in (A, A_NO_TOKEN, B) else allowed
    if rule == "admin":
        return allowed if principal == ADMIN else {403}
    raise AssertionError(f"unknown rule {rule!r}")


#: Routes that would change A's things even with an empty body: allowed callers get a
#: random id (and must get 404), the others A's real, still changeable thing.
STATE_CHANGING: dict[tuple[str, str], str] = {
    ("POST", "/api/deliveries/{delivery_id:uuid}/advance"): "queued_delivery",
    ("POST", "/api/deliveries/{delivery_id:uuid}/return/complete"): "returning_delivery",
    ("POST", "/api/deliveries/{delivery_id:uuid}/return/cancel"): "returning_delivery",
    ("POST", "/staff/deliveries/{delivery_id:uuid}/advance"): "queued_delivery",
    ("POST", "/staff/deliveries/{delivery_id:uuid}/return/complete"): "returning_delivery",
    ("POST", "/staff/deliveries/{delivery_id:uuid}/return/cancel"): "returning_delivery",
    ("POST", "/api/orders/{order_id:uuid}/cancel"): "paid_order",
    ("POST", "/orders/{order_id:uuid}/cancel"): "paid_order",
    ("POST", "/refunds/{refund_id:uuid}/cancel"): "refund",
    ("POST", "/api/refunds/{refund_id:uuid}/cancel"): "refund",
}
LOGOUT = ("POST", "/logout")  # run last for each caller: it ends the browser session
#: Ends every session and token of the account, other callers' (A and A without a token
#: share one) included: checked only for callers who must be refused; what it does for a
#: signed-in caller is tested in test_security_pass.
SIGN_OUT_EVERYWHERE = ("POST", "/account/sign-out-everywhere")
SSE = re.compile(r"/(events|stream)$")
PARAM = re.compile(r"\{(\w+):\w+\}")
LEAKS = ("Traceback", "sqlalchemy")


# -- the callers and A's things -----------------------------------------------------------


@dataclass
class Caller:
    name: str
    browser: httpx.AsyncClient  # cookies: session (if signed in) and CSRF
    csrf: str
    bearer: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    callers: dict[str, Caller]
    ids: dict[str, str]  # A's things by name
    a: dict[str, str]  # A's API identity
    shop: Shop
    first_event: int  # the outbox's last event before the world was made


async def _user_with_role(client: httpx.AsyncClient, shop: Shop, role: str) -> dict[str, str]:
    """An account made with the real CLI (as an operator would), with its bearer token."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    command = [sys.executable, "-m", "app.cli", "user", "create", "--email", email]
    await asyncio.to_thread(
        subprocess.run,
        [*command, "--password", PASSWORD, "--role", role],
        check=True,
        env={**os.environ, **shop.env},
        capture_output=True,
    )
    token = await client.post("/api/auth/token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"email": email, "token": token.json()["access_token"]}


async def _anonymous_browser(client: httpx.AsyncClient) -> str:
    await client.get("/login")
    return client.cookies["pizzeria_csrf"]


async def _snapshot(client: httpx.AsyncClient, world: World) -> dict[str, Any]:
    """What must not change: A's orders, deliveries and refund."""
    orders = (await client.get("/api/orders", headers=auth(world.a))).json()
    return {
        o["id"]: (
            o["status"],
            (o["delivery"] or {}).get("status"),
            (o["refund"] or {}).get("status"),
            (o["coupon"] or {}).get("status"),
        )
        for o in orders
    }


@pytest.fixture(scope="module")
async def world(shop: Shop) -> AsyncIterator[World]:
    first_event = await _last_event(shop)
    async with httpx.AsyncClient(base_url=shop.url, timeout=20) as client:
        staff, admin, a, b = await asyncio.gather(
            _user_with_role(client, shop, "staff"),
            _user_with_role(client, shop, "admin"),
            new_customer(client, "Customer A"),
            new_customer(client, "Customer B"),
        )
        delivered, paid = await asyncio.gather(
            delivered_order(client, a, auth(staff)), paid_order(client, a)
        )
        filed = await file_refund(client, a, delivered["id"], "quality", "x")
        assert filed.status_code == 201, filed.text
        await wait_for(
            client,
            a,
            delivered["id"],
            lambda v: (
                v["delivery"]["status"] == "return_requested" and v["coupon"]["status"] == "revoked"
            ),
            "a return in progress",
        )
        ids = {
            "order": delivered["id"],
            "refund": filed.json()["id"],
            "delivery": delivered["delivery"]["id"],
            "returning_delivery": delivered["delivery"]["id"],
            "paid_order": paid["id"],
            "queued_delivery": paid["delivery"]["id"],
        }

        browsers = {p: httpx.AsyncClient(base_url=shop.url, timeout=10) for p in PRINCIPALS}
        try:
            signed_in = {A: a, A_NO_TOKEN: a, B: b, STAFF: staff, ADMIN: admin}
            tokens = await asyncio.gather(
                *(
                    browser_session(browsers[p], signed_in[p]["email"])
                    if p in signed_in
                    else _anonymous_browser(browsers[p])
                    for p in PRINCIPALS
                )
            )
            callers = {
                p: Caller(p, browsers[p], csrf) for p, csrf in zip(PRINCIPALS, tokens, strict=True)
            }
            for p in (A, B, STAFF, ADMIN):
                callers[p].bearer = auth(signed_in[p])
            callers[GARBAGE].bearer = {"Authorization": "Bearer not-a-token"}
            yield World(callers, ids, a, shop, first_event)
        finally:
            await asyncio.gather(*(browser.aclose() for browser in browsers.values()))


# -- the matrix ---------------------------------------------------------------------------


def _url(route: Route, ids: dict[str, str], target: str | None) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in ("order_id", "refund_id", "delivery_id") and target is not None:
            return target
        return {
            "order_id": ids["order"],
            "refund_id": ids["refund"],
            "delivery_id": ids["delivery"],
            "partner": "payment",
            "outcome": "noop",  # unknown: allowed callers get 404, nothing changes
            "file_path": "css/app.css",
            "letter_id": "987654321",  # no such dead letter: allowed callers get 404
        }.get(name, "x")

    return PARAM.sub(fill, route.path)


def _describe(expectation: Expectation) -> str:
    if isinstance(expectation, set):
        return "/".join(str(s) for s in sorted(expectation))
    return expectation.__name__


def _matches(expectation: Expectation, response: httpx.Response) -> bool:
    if isinstance(expectation, set):
        return response.status_code in expectation
    return expectation(response)


async def _call(caller: Caller, route: Route, url: str) -> tuple[httpx.Response, str]:
    api = route.path.startswith("/api/")
    headers = dict(caller.bearer) if (api or caller.name == GARBAGE) else {}
    kwargs: dict[str, Any] = {"headers": headers}
    if route.method in ("POST", "PUT", "PATCH", "DELETE"):
        if api or route.path.startswith("/webhooks/"):
            kwargs["content"] = b""
        else:
            kwargs["data"] = {"_csrf_token": caller.csrf}
    if route.method == "GET" and SSE.search(route.path):
        async with caller.browser.stream(route.method, url, **kwargs) as response:
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                return response, ""  # an endless stream: the status is all we need
            await response.aread()
            return response, response.text
    response = await caller.browser.request(route.method, url, **kwargs)
    return response, response.text


async def _run(caller: Caller, routes: tuple[Route, ...], world: World) -> list[str]:
    problems = []
    ordered = sorted(routes, key=lambda r: (r.method, r.path) == LOGOUT)
    for route in ordered:
        if route.rule is not None and route.rule not in RULES:
            continue  # reported by test_every_route_declares_an_access_rule
        expectation = expected(route.rule, caller.name, route.path, route.method)
        if (route.method, route.path) == SIGN_OUT_EVERYWHERE and expectation is allowed:
            continue
        target = None
        victim = STATE_CHANGING.get((route.method, route.path))
        if victim is not None:
            if expectation is allowed:
                target, expectation = str(uuid.uuid4()), {404}
            else:
                target = world.ids[victim]
        url = _url(route, world.ids, target)
        response, body = await _call(caller, route, url)
        where = f"{route.id} as {caller.name} ({route.method} {url})"
        if not _matches(expectation, response):
            location = response.headers.get("location")
            got = f"{response.status_code}" + (f" -> {location}" if location else "")
            problems.append(f"{where}: expected {_describe(expectation)}, got {got}")
        for leak in LEAKS:
            if leak.lower() in body.lower():
                problems.append(f"{where}: the body mentions {leak!r}")
    return problems


async def test_the_access_matrix_holds_for_every_route_and_caller(world: World) -> None:
    routes = route_table()
    async with httpx.AsyncClient(base_url=world.shop.url) as c:
        # a positive signal before each look: whatever this module's calls set off
        # (events, then their handlers) has run to the end
        await _all_handled(world)
        before = await _snapshot(c, world)
        found = await asyncio.gather(
            *(_run(caller, routes, world) for caller in world.callers.values())
        )
        await _all_handled(world)
        after = await _snapshot(c, world)
    problems = sorted(p for per_caller in found for p in per_caller)
    if before != after:
        problems.append(f"A's things changed: before {before}, after {after}")
    assert not problems, f"{len(problems)} access matrix mismatches:\n" + "\n".join(problems)


async def _last_event(shop: Shop) -> int:
    engine = create_async_engine(shop.env["DATABASE_URL"], poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            last = await conn.scalar(select(func.coalesce(func.max(OutboxRow.seq), 0)))
    finally:
        await engine.dispose()
    return int(last or 0)


async def _all_handled(world: World) -> None:
    """Wait until every event recorded since the world was made has an inbox row from
    each of its subscribers (one that failed for good never writes it: the wait fails)."""

    async def handled() -> bool:
        engine = create_async_engine(world.shop.env["DATABASE_URL"], poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                events = (
                    await conn.execute(
                        select(OutboxRow.id, OutboxRow.type).where(
                            OutboxRow.seq > world.first_event
                        )
                    )
                ).all()
                done = set(
                    (
                        await conn.execute(
                            select(InboxRow.handler, InboxRow.event_id).where(
                                InboxRow.event_id.in_([e.id for e in events])
                            )
                        )
                    ).all()
                )
        finally:
            await engine.dispose()
        wanted = {(s.task, e.id) for e in events for s in SUBSCRIPTIONS.get(e.type, [])}
        return wanted <= done

    await eventually(handled, "every event handled by each of its subscribers", 60)


def test_the_matrix_covers_the_routes_that_change_state_on_an_empty_request() -> None:
    """STATE_CHANGING must name real routes, or a renamed route would lose its safe ids."""
    ids = {(r.method, r.path) for r in route_table()}
    stale = [f"{m} {p}" for m, p in [*STATE_CHANGING, LOGOUT] if (m, p) not in ids]
    assert not stale, f"no longer in the route table: {stale}"
