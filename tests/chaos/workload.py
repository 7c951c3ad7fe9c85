"""A bounded, seeded workload: customers and staff doing what they do, over HTTP.

Each order follows one scenario (paid and delivered, declined, cancelled, refunded, refund
withdrawn, refund withdrawn and filed again). Clients behave like real ones under faults:
a 503 or a lost connection is retried as the answer says (the same ``Idempotency-Key`` for
orders), so an order counts as *acknowledged* only once the shop answered 2xx. With
``double`` every user action is sent twice at once (a double click on every form).

The workload never asserts: it records what it did (``OrderRun``) and anything the shop
did wrong on the way (``Anomaly``: a 500, a double click that did something twice), and
gives up on a step after its deadline. The invariant checker judges the result.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx

PASSWORD = "chaos-password-1234"
GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
RETRYABLE = {502, 503, 504, 429}
POLL_SECONDS = 0.6


class Scenario(StrEnum):
    delivered = "delivered"
    declined = "declined"
    cancelled = "cancelled"
    refunded = "refunded"
    refund_withdrawn = "refund_withdrawn"
    refund_again = "refund_again"


#: how often each scenario comes up (the mix is drawn with the phase's seed)
MIX = {
    Scenario.delivered: 4,
    Scenario.declined: 2,
    Scenario.cancelled: 2,
    Scenario.refunded: 3,
    Scenario.refund_withdrawn: 2,
    Scenario.refund_again: 3,
}
#: the order's status once everything settled, per scenario
EXPECTED_STATUS = {
    Scenario.delivered: "fulfilled",
    Scenario.declined: "payment_failed",
    Scenario.cancelled: "cancelled",
    Scenario.refunded: "refunded",
    Scenario.refund_withdrawn: "fulfilled",
    Scenario.refund_again: "refunded",
}


@dataclass(frozen=True)
class Anomaly:
    what: str
    detail: str
    #: the answer's ``X-Request-ID``: the web log's lines about it go in the report
    request_id: str | None = None


@dataclass
class OrderRun:
    scenario: Scenario
    order_id: str | None = None
    steps: list[str] = field(default_factory=list)
    gave_up: str | None = None
    refunds: list[str] = field(default_factory=list)
    #: return pickups of withdrawn refunds (the rider to send back is the newest trip's)
    old_pickups: set[str] = field(default_factory=set)


class _SessionLost(Exception):
    """The browser's session is gone (Redis restarted empty): sign in again."""


class GaveUp(Exception):
    """A step did not happen before its deadline (the shop did not converge)."""


@dataclass
class Actor:
    """A signed-in customer or staff member (bearer token)."""

    email: str
    headers: dict[str, str]


class Workload:
    """Drives orders against the shop; shared by every phase of a chaos run."""

    def __init__(self, url: str, sandbox_url: str, *, seed: int) -> None:
        self.url = url
        self.sandbox_url = sandbox_url
        self.random = random.Random(seed)
        self.client = httpx.AsyncClient(
            base_url=url, timeout=15, limits=httpx.Limits(max_connections=200)
        )
        self.sandbox = httpx.AsyncClient(base_url=sandbox_url, timeout=15)
        self.customers: list[Actor] = []
        self.staff: Actor | None = None
        self.reasons: list[str] = []
        self.anomalies: list[Anomaly] = []
        self.step_deadline = 60.0
        self.double = False
        #: orders acknowledged in the current phase (what the faults work on)
        self.placed: set[str] = set()

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.sandbox.aclose()

    # -- people ---------------------------------------------------------------------------

    async def sign_up(self, customers: int, staff_email: str) -> None:
        for i in range(customers):
            email = f"chaos-{i}-{uuid.uuid4().hex[:6]}@example.com"
            await self.request(
                "POST",
                "/api/auth/signup",
                json={"email": email, "password": PASSWORD, "name": f"Customer {i}"},
                ok={201},
            )
            self.customers.append(Actor(email, await self.token(email)))
        self.staff = Actor(staff_email, await self.token(staff_email))
        assert self.staff is not None
        reasons = await self.request("GET", "/api/refund-reasons", self.staff, ok={200})
        self.reasons = [r["code"] for r in reasons.json()]

    async def token(self, email: str) -> dict[str, str]:
        response = await self.request(
            "POST", "/api/auth/token", data={"username": email, "password": PASSWORD}, ok={200}
        )
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    # -- HTTP as a patient client ---------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        actor: Actor | None = None,
        *,
        ok: set[int],
        final: set[int] = frozenset(),  # type: ignore[assignment]
        deadline: float | None = None,
        client: httpx.AsyncClient | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send until the answer is in ``ok`` or ``final``; retry 503s and lost connections
        as a client following ``Retry-After`` would. Other answers are anomalies."""
        until = time.monotonic() + (deadline or self.step_deadline)
        headers = {**(actor.headers if actor else {}), **kwargs.pop("headers", {})}
        while True:
            try:
                response = await (client or self.client).request(
                    method, path, headers=headers, **kwargs
                )
            except httpx.HTTPError as exc:
                response = None
                problem = f"{type(exc).__name__}"
            else:
                if response.status_code in ok or response.status_code in final:
                    return response
                problem = f"{response.status_code} {response.text[:200]}"
                if response.status_code not in RETRYABLE:
                    self.anomalies.append(
                        Anomaly(
                            f"HTTP {response.status_code}",
                            f"{method} {path} (request id "
                            f"{response.headers.get('x-request-id', '?')}): "
                            f"{response.text[:200]}",
                            request_id=response.headers.get("x-request-id"),
                        )
                    )
                    if response.status_code < 500:
                        raise GaveUp(f"{method} {path} answered {problem}")
            if time.monotonic() > until:
                raise GaveUp(f"{method} {path} never succeeded: {problem}")
            await asyncio.sleep(0.3 + self.random.random() * 0.4)

    async def twice(self, send: Callable[[], Awaitable[httpx.Response]]) -> list[httpx.Response]:
        """The action once, or (double-submit phases) twice at the same moment."""
        if not self.double:
            return [await send()]
        return list(await asyncio.gather(send(), send()))

    async def wait(
        self, what: str, probe: Callable[[], Awaitable[Any]], deadline: float | None = None
    ) -> Any:
        until = time.monotonic() + (deadline or self.step_deadline)
        while time.monotonic() < until:
            try:
                found = await probe()
            except (httpx.HTTPError, KeyError, ValueError):
                found = None
            if found:
                return found
            await asyncio.sleep(POLL_SECONDS * (0.75 + self.random.random() / 2))
        raise GaveUp(f"never saw {what}")

    async def view(self, customer: Actor, order_id: str) -> dict[str, Any] | None:
        response = await self.client.get(f"/api/orders/{order_id}", headers=customer.headers)
        return response.json() if response.status_code == 200 else None  # type: ignore[no-any-return]

    async def order_reaches(
        self, customer: Actor, order_id: str, test: Callable[[dict[str, Any]], bool], what: str
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            view = await self.view(customer, order_id)
            return view if view is not None and test(view) else None

        return await self.wait(f"order {order_id} {what}", probe)  # type: ignore[no-any-return]

    # -- the scenarios --------------------------------------------------------------------

    def draw(self, count: int) -> list[Scenario]:
        population = [s for s, weight in MIX.items() for _ in range(weight)]
        return [self.random.choice(population) for _ in range(count)]

    async def run(self, scenarios: list[Scenario], spread: float) -> list[OrderRun]:
        """Start every order within ``spread`` seconds and wait for all of them."""
        runs = [OrderRun(s) for s in scenarios]
        starts = sorted(self.random.uniform(0, spread) for _ in runs)
        customers = [self.random.choice(self.customers) for _ in runs]

        async def one(run: OrderRun, start: float, customer: Actor) -> None:
            await asyncio.sleep(start)
            try:
                await self.order(run, customer)
            except GaveUp as exc:
                run.gave_up = f"{run.steps[-1] if run.steps else 'start'}: {exc}"

        await asyncio.gather(*(one(*args) for args in zip(runs, starts, customers, strict=True)))
        return runs

    async def order(self, run: OrderRun, customer: Actor) -> None:
        card = DECLINED_CARD if run.scenario is Scenario.declined else GOOD_CARD
        key = uuid.uuid4().hex
        body = {
            "items": [{"pizzaId": self.random.randint(1, 4), "qty": self.random.randint(1, 3)}],
            "address": f"Via Chaos {self.random.randint(1, 999)}, Napoli",
            "cardNumber": card,
        }
        if self.double and self.random.random() < 1 / 3:
            run.order_id = await self.checkout_form(customer, body)
            run.steps.append("placed through the checkout form")
        else:
            placed = await self.twice(
                lambda: self.request(
                    "POST",
                    "/api/orders",
                    customer,
                    json=body,
                    headers={"Idempotency-Key": key},
                    ok={200, 201},
                )
            )
            ids = {r.json()["id"] for r in placed}
            if len(ids) > 1:
                self.anomalies.append(Anomaly("double submit", f"one order key made orders {ids}"))
            run.order_id = str(placed[0].json()["id"])
        self.placed.add(run.order_id)
        run.steps.append("placed")
        order_id = run.order_id
        if run.scenario is Scenario.cancelled:
            await self.twice(
                lambda: self.request(
                    "POST", f"/api/orders/{order_id}/cancel", customer, ok={200}, final={409}
                )
            )
            run.steps.append("cancelled")
            await self.order_reaches(customer, order_id, _settled_cancel, "cancelled and voided")
            return
        if run.scenario is Scenario.declined:
            await self.order_reaches(
                customer, order_id, lambda v: v["status"] == "payment_failed", "declined"
            )
            return
        view = await self.order_reaches(
            customer, order_id, lambda v: bool(v.get("delivery")), "with a delivery"
        )
        run.steps.append("paid")
        await self.cook(view["delivery"]["id"], order_id)
        run.steps.append("ready")
        await self.order_reaches(
            customer,
            order_id,
            lambda v: v["status"] == "fulfilled" and bool(v.get("coupon")),
            "delivered with a coupon",
        )
        run.steps.append("delivered")
        if run.scenario is Scenario.delivered:
            return
        delivery_id = view["delivery"]["id"]
        refund_id = await self.file_refund(run, customer, order_id)
        if run.scenario in (Scenario.refund_withdrawn, Scenario.refund_again):
            # the partner is already on its way (this trip's rider, not the next one's)
            run.old_pickups.add(await self.return_pickup(delivery_id))
            await self.twice(
                lambda: self.request(
                    "POST", f"/api/refunds/{refund_id}/cancel", customer, ok={200}, final={409}
                )
            )
            run.steps.append("withdrawn")
            await self.order_reaches(
                customer,
                order_id,
                lambda v: (
                    (v.get("refund") or {}).get("status") == "cancelled"
                    and (v.get("coupon") or {}).get("status") == "issued"
                ),
                "refund withdrawn, coupon back",
            )
            if run.scenario is Scenario.refund_withdrawn:
                return
            await self.file_refund(run, customer, order_id)
        await self.bring_back(run, delivery_id)
        await self.order_reaches(
            customer, order_id, lambda v: v["status"] == "refunded", "refunded"
        )
        run.steps.append("refunded")

    async def checkout_form(self, customer: Actor, body: dict[str, Any]) -> str:
        """The HTML checkout, as a browser: sign in, fill the basket, then press "Place
        order and pay" twice (both posts carry the form's one checkout token).

        Sessions live in Redis: when Redis restarted empty the browser is sent back to
        sign in (303 to /login, or a 403 for a form whose session is gone), and does."""
        until = time.monotonic() + self.step_deadline
        while True:
            try:
                return await self._checkout_once(customer, body)
            except _SessionLost as lost:
                if time.monotonic() > until:
                    raise GaveUp(f"the checkout kept losing its session: {lost}") from lost
                await asyncio.sleep(0.5)

    async def _checkout_once(self, customer: Actor, body: dict[str, Any]) -> str:
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as browser:
            await self.request("GET", "/login", ok={200}, client=browser)
            csrf = browser.cookies["pizzeria_csrf"]
            form = {"email": customer.email, "password": PASSWORD, "next": "/"}
            signed_in = await self.request(
                "POST",
                "/login",
                data={**form, "_csrf_token": csrf},
                ok={303},
                final={403},
                client=browser,
            )
            if signed_in.status_code == 403:
                raise _SessionLost("sign-in form refused")
            csrf = browser.cookies.get("pizzeria_csrf", csrf)  # rotated at sign-in
            line = body["items"][0]
            basket = {"pizza_id": line["pizzaId"], "qty": line["qty"], "_csrf_token": csrf}
            added = await self.request(
                "POST", "/basket/add", data=basket, ok={200, 303}, final={403}, client=browser
            )
            if added.status_code == 403:
                raise _SessionLost("basket form refused")
            page = await self.request("GET", "/checkout", ok={200}, final={303}, client=browser)
            if page.status_code == 303 or "idempotency_key" not in page.text:
                raise _SessionLost("checkout sent to sign in")
            csrf = _hidden(page.text, "_csrf_token")
            order = {
                "address": body["address"],
                "card_number": body["cardNumber"],
                "coupon_code": "",
                "idempotency_key": _hidden(page.text, "idempotency_key"),
                "_csrf_token": csrf,
            }
            answers = await asyncio.gather(
                *(
                    self.request(
                        "POST",
                        "/checkout",
                        data=order,
                        ok={303},
                        final={403, 422},
                        client=browser,
                    )
                    for _ in range(2)
                )
            )
        places = {
            a.headers["location"]
            for a in answers
            if a.status_code == 303 and "/orders/" in a.headers["location"]
        }
        if len(places) > 1:
            self.anomalies.append(
                Anomaly("double submit", f"checkout twice with one token went to {places}")
            )
        if not places:
            if any(a.status_code == 403 or a.status_code == 303 for a in answers):
                raise _SessionLost("checkout form refused")
            raise GaveUp("the checkout form never placed the order")
        return min(places).rsplit("/", 1)[-1]

    async def cook(self, delivery_id: str, order_id: str) -> None:
        """Staff move the ticket queued → preparing → baking → ready, one click each,
        each click saying the stage it saw (as the board's buttons do).

        A click that moved the ticket further than one stage (a double click, or a retry
        of a move that had committed but answered 503) is an anomaly."""
        assert self.staff is not None
        staff = self.staff
        current = "queued"
        for _ in range(10):  # three clicks, and a look at the board after a refused one
            if _stage_index(current) >= _stage_index("ready"):
                break
            seen, target = current, STAGES[_stage_index(current) + 1]
            answers = await self.twice(
                lambda seen=seen: self.request(  # type: ignore[misc]
                    "POST",
                    f"/api/deliveries/{delivery_id}/advance",
                    staff,
                    json={"from": seen},
                    ok={200},
                    final={409},
                )
            )
            moved = [r.json()["status"] for r in answers if r.status_code == 200]
            if len(moved) > 1 or any(status != target for status in moved):
                self.anomalies.append(
                    Anomaly(
                        "moved twice",
                        f"delivery {delivery_id}: one move to {target} answered {moved}",
                    )
                )
            if not moved:  # refused: it moved meanwhile (our retried click had committed)
                now = await self.request("GET", f"/api/deliveries/{delivery_id}", staff, ok={200})
                moved = [now.json()["status"]]
            current = max([current, *moved], key=_stage_index)
        if current == "out_for_delivery":  # our clicks moved it past ready: drive it in-house
            await self.request(
                "POST", f"/api/deliveries/{delivery_id}/advance", staff, ok={200}, final={409}
            )

    async def file_refund(self, run: OrderRun, customer: Actor, order_id: str) -> str:
        reason = self.random.choice(self.reasons)
        answers = await self.twice(
            lambda: self.request(
                "POST",
                "/api/refunds",
                customer,
                json={"orderId": order_id, "reasonCode": reason, "reason": "chaos says so"},
                ok={201},
                final={409},
            )
        )
        created = [r.json()["id"] for r in answers if r.status_code == 201]
        if len(created) > 1:
            self.anomalies.append(Anomaly("double submit", f"two refunds for {order_id}"))
        if not created:
            raise GaveUp(f"refund refused: {answers[0].text[:200]}")
        run.refunds.append(created[0])
        run.steps.append(f"refund {len(run.refunds)} filed")
        return str(created[0])

    async def return_pickup(self, delivery_id: str, old: frozenset[str] = frozenset()) -> str:
        """The partner's live pickup for the return trip, once the shop has asked for it:
        the newest one, and not one of an earlier trip (``old``) whose withdrawal the
        shop may still be retrying."""

        async def probe() -> str | None:
            response = await self.sandbox.get(
                "/sandbox/courier/pickups", params={"reference": f"{delivery_id}:return"}
            )
            live = [
                p
                for p in response.json()
                if p["status"] in ("requested", "assigned") and p["id"] not in old
            ]
            return str(live[-1]["id"]) if live else None

        return await self.wait(f"a return pickup for {delivery_id}", probe)  # type: ignore[no-any-return]

    async def bring_back(self, run: OrderRun, delivery_id: str) -> None:
        """The pizzas come back: the partner's rider delivers them to the shop (most
        refunds), or staff take them in at the counter (every third)."""
        if self.random.random() < 1 / 3:
            assert self.staff is not None
            await self.wait("the return on the board", lambda: self._returning(delivery_id))
            await self.twice(
                lambda: self.request(
                    "POST",
                    f"/api/deliveries/{delivery_id}/return/complete",
                    self.staff,
                    ok={200},
                    final={409},
                )
            )
            run.steps.append("return taken in by staff")
            return
        pickup = await self.return_pickup(delivery_id, frozenset(run.old_pickups))
        await self.sandbox.post(
            f"/sandbox/courier/pickups/{pickup}/events", json={"type": "delivered"}
        )
        run.steps.append("return delivered by the partner")

    async def _returning(self, delivery_id: str) -> bool:
        assert self.staff is not None
        response = await self.client.get(
            f"/api/deliveries/{delivery_id}", headers=self.staff.headers
        )
        return response.status_code == 200 and response.json()["status"] == "return_requested"


def _hidden(html: str, name: str) -> str:
    """The value of a form's hidden input."""
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    if found is None:
        raise GaveUp(f"no {name} in the form")
    return found.group(1)


STAGES = ("queued", "preparing", "baking", "ready", "out_for_delivery", "delivered")


def _stage_index(status: str) -> int:
    return STAGES.index(status) if status in STAGES else len(STAGES)


def _settled_cancel(view: dict[str, Any]) -> bool:
    return view["status"] == "cancelled" and view["payment"]["status"] == "voided"
