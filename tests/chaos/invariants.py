"""The invariant checker: what must hold once the shop has gone quiet, whatever crashed.

It reads PostgreSQL (every context's tables, the outbox and inbox, the read models) and the
sandbox partners' own records (charges at the payment provider, pickups at the delivery
partner) and reports every broken rule as a ``Violation``. It is plain reusable code:

    report = await check(dsn, sandbox_url, orders=phase_order_ids, acknowledged=acked)

``orders`` limits the order-level rules to some orders (one phase of a chaos run); the
rules use the real state machines (``app/*/models.py``) and the real event wiring
(``app.subscriptions``), so they follow the code as it changes.

Rules (``Violation.rule``):
- ``acknowledged``: every order the shop acknowledged (2xx) exists, with its payment.
- ``converged``: nothing left half-way (orders placed/paid, payments pending, refunds
  requested, deliveries on the road, outbox rows unpublished, partner pickups under way).
- ``capture``: at most one capture per order at the provider, none for unknown payments.
- ``money``: void exactly for cancelled orders that were charged, refund exactly for
  refunded orders (one completed refund), the provider agreeing with our records.
- ``coupon``: each delivered order one coupon, revoked exactly while a refund holds.
- ``delivery``: the delivery agrees with the order (one live refund at most).
- ``partner``: the delivery partner's pickups agree with the deliveries (none left under
  way once the delivery or its return is over, none for a cancelled delivery).
- ``state-machine``: every aggregate's status history (its events, by version) is a path
  of its state machine and ends where the row is.
- ``read-model``: order views, board cards and refund views equal their source tables.
- ``inbox``: every event was recorded by every one of its subscribers.
- ``dead-letter``: nothing in the dead-letter table that should not be.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg
import httpx

from app.coupon.models import COUPON_MACHINE, CouponStatus
from app.delivery.models import COURIER_MACHINE, DELIVERY_MACHINE, CourierStatus, DeliveryStatus
from app.ordering.models import ORDER_MACHINE, OrderStatus
from app.payment.models import PAYMENT_MACHINE, PaymentStatus
from app.platform.statemachine import StateMachine
from app.refund.models import REFUND_MACHINE, RefundStatus
from app.subscriptions import SUBSCRIPTIONS

Row = Mapping[str, Any]

ORDER_DONE = {"payment_failed", "cancelled", "fulfilled", "refunded"}
DELIVERY_DONE = {"delivered", "cancelled", "returned"}
PICKUP_DONE = {"delivered", "cancelled"}
#: a refund "holds" while it can still take or has taken the money back
REFUND_HOLDS = {"requested", "completed"}


@dataclass(frozen=True)
class Violation:
    rule: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.subject}: {self.detail}"


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    orders_checked: int = 0
    events_checked: int = 0

    def add(self, rule: str, subject: Any, detail: str) -> None:
        self.violations.append(Violation(rule, str(subject), detail))

    def by_rule(self) -> dict[str, list[Violation]]:
        grouped: dict[str, list[Violation]] = defaultdict(list)
        for violation in self.violations:
            grouped[violation.rule].append(violation)
        return dict(grouped)

    def summary(self, examples: int = 3) -> str:
        if not self.violations:
            return f"all invariants hold ({self.orders_checked} orders)"
        lines = []
        for rule, found in sorted(self.by_rule().items()):
            lines.append(f"{rule}: {len(found)} violation(s)")
            lines += [f"    {v.subject}: {v.detail}" for v in found[:examples]]
        return "\n".join(lines)


# -- what the checker reads -------------------------------------------------------------


@dataclass
class World:
    """Everything the rules look at, read once."""

    orders: dict[str, Row]
    payments: dict[str, Row]  # by order id
    deliveries: dict[str, Row]  # by order id
    refunds: dict[str, list[Row]]  # by order id, oldest first
    coupons: dict[str, Row]  # by order id
    events: list[Row]
    inbox: set[tuple[str, str]]
    order_views: dict[str, Row]
    board_cards: dict[str, Row]  # by delivery id
    refund_views: dict[str, Row]  # by refund id
    dead_letters: list[Row] | None  # None: the shop has no dead-letter table (yet)
    charges: list[dict[str, Any]]
    pickups: list[dict[str, Any]]

    @property
    def delivery_ids_with_events(self) -> set[str]:
        """Deliveries that announced themselves (a cancel tombstone never does)."""
        return {e["aggregate_id"] for e in self.events if e["aggregate_type"] == "delivery"}


def _key(value: Any) -> str:
    return str(value)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def read_world(dsn: str, sandbox_url: str) -> World:
    conn = await asyncpg.connect(dsn)
    # One snapshot for every table, so a transaction committing meanwhile is seen whole
    # or not at all (an event without its row would look like a broken history).
    snapshot = conn.transaction(isolation="repeatable_read", readonly=True)
    await snapshot.start()
    try:
        for kind in ("json", "jsonb"):
            await conn.set_type_codec(
                kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
        orders = {_key(r["id"]): r for r in await conn.fetch("SELECT * FROM ordering.orders")}
        payments = {
            _key(r["order_id"]): r for r in await conn.fetch("SELECT * FROM payment.payments")
        }
        deliveries = {
            _key(r["order_id"]): r for r in await conn.fetch("SELECT * FROM delivery.deliveries")
        }
        refunds: dict[str, list[Row]] = defaultdict(list)
        for r in await conn.fetch("SELECT * FROM refund.refunds ORDER BY created_at, id"):
            refunds[_key(r["order_id"])].append(r)
        coupons = {_key(r["order_id"]): r for r in await conn.fetch("SELECT * FROM coupon.coupons")}
        events = await conn.fetch("SELECT * FROM platform.outbox ORDER BY seq")
        inbox = {
            (r["handler"], _key(r["event_id"]))
            for r in await conn.fetch("SELECT handler, event_id FROM platform.inbox")
        }
        order_views = {
            _key(r["order_id"]): r for r in await conn.fetch("SELECT * FROM status.order_views")
        }
        board_cards = {
            _key(r["delivery_id"]): r for r in await conn.fetch("SELECT * FROM status.board_cards")
        }
        refund_views = {
            _key(r["refund_id"]): r for r in await conn.fetch("SELECT * FROM status.refund_views")
        }
        dead_letters = await _dead_letters(conn)
    finally:
        await snapshot.rollback()
        await conn.close()
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30) as client:
        charges = (await client.get("/sandbox/payments/charges")).raise_for_status().json()
        pickups = (await client.get("/sandbox/courier/pickups")).raise_for_status().json()
    return World(
        orders,
        payments,
        deliveries,
        dict(refunds),
        coupons,
        list(events),
        inbox,
        order_views,
        board_cards,
        refund_views,
        dead_letters,
        charges,
        pickups,
    )


async def _dead_letters(conn: asyncpg.Connection) -> list[Row] | None:
    """The active dead letters, wherever the pipeline keeps them (a table with ``dead`` in
    its name; one retried and not failed again, ``retried_at`` set, is resolved); None
    while there is no such table."""
    table = await conn.fetchrow(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_name ILIKE '%dead%' AND table_schema NOT IN ('pg_catalog', "
        "'information_schema') ORDER BY table_schema, table_name LIMIT 1"
    )
    if table is None:
        return None
    schema, name = table["table_schema"], table["table_name"]
    retried = await conn.fetchval(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = $1 "
        "AND table_name = $2 AND column_name = 'retried_at'",
        schema,
        name,
    )
    active = " WHERE retried_at IS NULL" if retried else ""
    return list(await conn.fetch(f'SELECT * FROM "{schema}"."{name}"{active}'))


# -- the rules --------------------------------------------------------------------------


async def check(
    dsn: str,
    sandbox_url: str,
    *,
    orders: Iterable[str] | None = None,
    acknowledged: Iterable[str] = (),
    allowed_dead_letters: Iterable[str] = (),
    expected_dead_letters: Iterable[str] = (),
) -> Report:
    """Read everything and check every rule; ``orders`` limits the order-level rules.

    ``expected_dead_letters``: event ids of poison messages sent on purpose, which must be
    parked (so they are allowed, too)."""
    world = await read_world(dsn, sandbox_url)
    expected = set(map(str, expected_dead_letters))
    return check_world(
        world,
        orders=None if orders is None else set(map(str, orders)),
        acknowledged=set(map(str, acknowledged)),
        allowed_dead_letters=set(map(str, allowed_dead_letters)) | expected,
        expected_dead_letters=expected,
    )


def check_world(
    world: World,
    *,
    orders: set[str] | None = None,
    acknowledged: set[str] | frozenset[str] = frozenset(),
    allowed_dead_letters: set[str] | frozenset[str] = frozenset(),
    expected_dead_letters: set[str] | frozenset[str] = frozenset(),
) -> Report:
    report = Report()
    for event_id in sorted(expected_dead_letters):
        if world.dead_letters is None:
            report.add("dead-letter", f"poison {event_id}", "no dead-letter table to park it in")
        elif not any(event_id in str(dict(row)) for row in world.dead_letters):
            report.add("dead-letter", f"poison {event_id}", "never parked as a dead letter")
    scope = set(world.orders) if orders is None else orders
    events = [e for e in world.events if e["correlation_id"] in scope]
    report.orders_checked = len(scope & set(world.orders))
    report.events_checked = len(events)
    charges_by_payment: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for charge in world.charges:
        charges_by_payment[charge["reference"]].append(charge)
    pickups_by_ref: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pickup in world.pickups:
        pickups_by_ref[pickup["reference"]].append(pickup)

    for order_id in sorted(acknowledged):
        if order_id not in world.orders:
            report.add("acknowledged", f"order {order_id}", "acknowledged but not in the database")
        elif order_id not in world.payments:
            report.add("acknowledged", f"order {order_id}", "has no payment")
    known_payments = {_key(p["id"]) for p in world.payments.values()}
    for reference in charges_by_payment:
        if reference not in known_payments:
            report.add("capture", f"charge {reference}", "a charge for a payment we never made")
    for order_id in sorted(scope & set(world.orders)):
        _check_order(world, report, order_id, charges_by_payment, pickups_by_ref)
    _check_histories(world, report, events)
    _check_pipeline(world, report, events, allowed_dead_letters, scope, orders is not None)
    return report


def _check_order(
    world: World,
    report: Report,
    order_id: str,
    charges_by_payment: Mapping[str, list[dict[str, Any]]],
    pickups_by_ref: Mapping[str, list[dict[str, Any]]],
) -> None:
    order = world.orders[order_id]
    subject = f"order {order_id}"
    status = order["status"]
    payment = world.payments.get(order_id)
    delivery = world.deliveries.get(order_id)
    refunds = world.refunds.get(order_id, [])
    coupon = world.coupons.get(order_id)
    if status not in ORDER_DONE:
        report.add("converged", subject, f"order still {status}")
    if payment is None:
        report.add("money", subject, "no payment")
        return
    _check_money(report, subject, order, payment, refunds, charges_by_payment)
    _check_delivery(report, subject, order, delivery, refunds, pickups_by_ref)
    _check_coupon(report, subject, delivery, refunds, coupon)
    _check_views(world, report, subject, order, payment, delivery, refunds, coupon)


def _check_money(
    report: Report,
    subject: str,
    order: Row,
    payment: Row,
    refunds: list[Row],
    charges_by_payment: Mapping[str, list[dict[str, Any]]],
) -> None:
    status, pay = order["status"], payment["status"]
    charges = charges_by_payment.get(_key(payment["id"]), [])
    captured = [c for c in charges if "capture" in c["operations"]]
    voids = sum(c["operations"].count("void") for c in charges)
    refunds_at_provider = sum(c["operations"].count("refund") for c in charges)
    completed = [r for r in refunds if r["status"] == "completed"]
    if len(captured) > 1:
        report.add("capture", subject, f"{len(captured)} captures at the provider")
    if payment["amount"] != order["total_amount"]:
        report.add(
            "money", subject, f"payment {payment['amount']} != total {order['total_amount']}"
        )
    expected_payment = {
        "payment_failed": "failed",
        "cancelled": "voided",
        "fulfilled": "captured",
        "refunded": "refunded",
    }.get(status)
    if expected_payment is not None and pay != expected_payment:
        report.add("money", subject, f"order {status} but payment {pay}")
    if pay == "pending" and status in ORDER_DONE:
        report.add("converged", subject, "payment still pending")
    # The provider's own record must say the same.
    if pay in ("captured", "refunded") or (pay == "voided" and payment["provider_ref"]):
        if len(captured) != 1:
            report.add("money", subject, f"payment {pay} but {len(captured)} captures at provider")
        elif captured[0]["id"] != payment["provider_ref"]:
            report.add("money", subject, "provider_ref is not the captured charge")
    if pay in ("failed", "pending") and captured:
        report.add("money", subject, f"payment {pay} but the provider captured the card")
    if pay == "voided" and not payment["provider_ref"] and captured:
        report.add("money", subject, "voided as uncharged, but the provider captured the card")
    should_void = 1 if status == "cancelled" and captured else 0
    if voids != should_void:
        report.add("money", subject, f"{voids} void(s) at the provider, expected {should_void}")
    should_refund = 1 if status == "refunded" else 0
    if refunds_at_provider != should_refund:
        report.add(
            "money",
            subject,
            f"{refunds_at_provider} refund(s) at provider, expected {should_refund}",
        )
    if len(completed) != should_refund:
        report.add("money", subject, f"{len(completed)} completed refund(s) on a {status} order")
    if status == "fulfilled" and pay == "refunded":
        report.add("money", subject, "money went back but the order still shows fulfilled")
    for refund in refunds:
        if refund["status"] == "requested":
            report.add("converged", f"refund {refund['id']}", "still requested (no return?)")


def _check_delivery(
    report: Report,
    subject: str,
    order: Row,
    delivery: Row | None,
    refunds: list[Row],
    pickups_by_ref: Mapping[str, list[dict[str, Any]]],
) -> None:
    status = order["status"]
    expected = {
        "payment_failed": None,
        "cancelled": "cancelled",
        "fulfilled": "delivered",
        "refunded": "returned",
    }
    if status in expected:
        want = expected[status]
        got = delivery["status"] if delivery else None
        if status == "fulfilled" and got == "return_requested":
            report.add("converged", subject, "return requested but never completed")
        elif got != want:
            report.add("delivery", subject, f"order {status} but delivery {got}, expected {want}")
    if delivery is None:
        return
    if delivery["status"] not in DELIVERY_DONE and status in ORDER_DONE:
        report.add("converged", subject, f"delivery still {delivery['status']}")
    delivery_id = _key(delivery["id"])
    outbound = pickups_by_ref.get(delivery_id, [])
    returns = pickups_by_ref.get(f"{delivery_id}:return", [])
    for pickup in outbound + returns:
        if pickup["status"] not in PICKUP_DONE and delivery["status"] in DELIVERY_DONE:
            report.add(
                "partner",
                subject,
                f"delivery {delivery['status']} but the partner's pickup {pickup['id']} "
                f"({pickup['reference']}) is still {pickup['status']}",
            )
    live_outbound = [p for p in outbound if p["status"] != "cancelled"]
    if len(live_outbound) > 1:
        report.add("delivery", subject, f"{len(live_outbound)} live pickups at the partner")
    if delivery["status"] == "cancelled" and live_outbound:
        report.add("partner", subject, "cancelled, but the partner's rider still came")
    holding = [r for r in refunds if r["status"] in REFUND_HOLDS]
    if len(holding) > 1:
        report.add("delivery", subject, f"{len(holding)} live refunds")


def _check_coupon(
    report: Report,
    subject: str,
    delivery: Row | None,
    refunds: list[Row],
    coupon: Row | None,
) -> None:
    delivered = delivery is not None and delivery["delivered_at"] is not None
    holds = any(r["status"] in REFUND_HOLDS for r in refunds)
    if not delivered:
        if coupon is not None:
            report.add("coupon", subject, f"a coupon ({coupon['status']}) for an undelivered order")
        return
    if coupon is None:
        if not holds:  # without a refund there is no tombstone to excuse a missing coupon
            report.add("coupon", subject, "delivered, no refund, but no coupon")
        return
    if holds and coupon["status"] not in ("revoked",) and not coupon["flagged"]:
        report.add("coupon", subject, f"a refund holds but the coupon is {coupon['status']}")
    if not holds and coupon["status"] not in ("issued", "redeemed"):
        report.add("coupon", subject, f"no refund holds but the coupon is {coupon['status']}")


def _check_views(
    world: World,
    report: Report,
    subject: str,
    order: Row,
    payment: Row,
    delivery: Row | None,
    refunds: list[Row],
    coupon: Row | None,
) -> None:
    order_id = _key(order["id"])
    view = world.order_views.get(order_id)
    if view is None:
        report.add("read-model", subject, "no order view")
        return
    doc = _json(view["doc"])

    def differs(what: str, shown: Any, actual: Any) -> None:
        if shown != actual:
            report.add("read-model", subject, f"view shows {what} {shown!r}, table says {actual!r}")

    differs("status", doc.get("status"), order["status"])
    differs("total", doc.get("totalAmount"), order["total_amount"])
    differs("payment", (doc.get("payment") or {}).get("status"), payment["status"])
    delivery_events = (
        delivery is not None and _key(delivery["id"]) in world.delivery_ids_with_events
    )
    if delivery is not None and delivery_events:
        shown = doc.get("delivery") or {}
        differs("delivery", shown.get("status"), delivery["status"])
        differs("courier", shown.get("courierStatus"), delivery["courier_status"])
    if coupon is not None:
        shown = doc.get("coupon") or {}
        differs("coupon", shown.get("status"), coupon["status"])
        differs("coupon code", shown.get("code"), coupon["code"])
    if refunds:
        latest = refunds[-1]
        shown = doc.get("refund") or {}
        differs("refund", shown.get("id"), _key(latest["id"]))
        differs("refund status", shown.get("status"), latest["status"])
    for refund in refunds:
        refund_view = world.refund_views.get(_key(refund["id"]))
        if refund_view is None:
            report.add("read-model", f"refund {refund['id']}", "no refund view")
            continue
        for column in ("status", "version", "reason_code", "amount", "cancelled_by"):
            if refund_view[column] != refund[column]:
                report.add(
                    "read-model",
                    f"refund {refund['id']}",
                    f"view {column} {refund_view[column]!r} != {refund[column]!r}",
                )
    if delivery is not None:
        card = world.board_cards.get(_key(delivery["id"]))
        if card is None and delivery_events:
            report.add("read-model", subject, "no board card for its delivery")
        elif card is not None:
            for column in ("status", "courier_status", "version"):
                if card[column] != delivery[column]:
                    report.add(
                        "read-model",
                        subject,
                        f"board card {column} {card[column]!r} != {delivery[column]!r}",
                    )


# -- status histories -------------------------------------------------------------------

#: aggregate type -> (its machine, where its history starts, the table's rows by id)
MACHINES: dict[str, tuple[StateMachine[Any], type[StrEnum], str | None]] = {
    "order": (ORDER_MACHINE, OrderStatus, None),
    "payment": (PAYMENT_MACHINE, PaymentStatus, "pending"),
    "delivery": (DELIVERY_MACHINE, DeliveryStatus, None),
    "refund": (REFUND_MACHINE, RefundStatus, None),
    "coupon": (COUPON_MACHINE, CouponStatus, None),
}
INITIAL = {"order": "placed", "delivery": "queued", "refund": "requested", "coupon": "issued"}


def _rows_by_id(world: World, aggregate: str) -> dict[str, Row]:
    if aggregate == "order":
        return world.orders
    if aggregate == "payment":
        return {_key(p["id"]): p for p in world.payments.values()}
    if aggregate == "delivery":
        return {_key(d["id"]): d for d in world.deliveries.values()}
    if aggregate == "coupon":
        return {_key(c["id"]): c for c in world.coupons.values()}
    return {_key(r["id"]): r for rs in world.refunds.values() for r in rs}


def _status_of(event: Row) -> str:
    payload = _json(event["payload"])
    if event["type"] == "OrderPlaced":
        return "placed"
    return str(payload["status"])


def _check_histories(world: World, report: Report, events: list[Row]) -> None:
    histories: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for event in events:
        if event["aggregate_type"] in MACHINES:
            histories[(event["aggregate_type"], event["aggregate_id"])].append(event)
    rows = {aggregate: _rows_by_id(world, aggregate) for aggregate in MACHINES}
    for (aggregate, aggregate_id), history in histories.items():
        subject = f"{aggregate} {aggregate_id}"
        machine, states, start = MACHINES[aggregate]
        history.sort(key=lambda e: int(_json(e["payload"])["version"]))
        versions = [int(_json(e["payload"])["version"]) for e in history]
        if len(set(versions)) != len(versions):
            types = [(v, e["type"]) for v, e in zip(versions, history, strict=True)]
            report.add("state-machine", subject, f"two events share a version: {types}")
        path = [start] if start else []
        path += [_status_of(e) for e in history]
        if not start and path[0] != INITIAL[aggregate]:
            report.add("state-machine", subject, f"history starts at {path[0]}")
        for before, after in itertools.pairwise(path):
            if before != after and not machine.can(states(before), states(after)):
                report.add("state-machine", subject, f"illegal step {before} -> {after}: {path}")
        if aggregate == "delivery":
            couriers = [str(_json(e["payload"])["courierStatus"]) for e in history]
            for before, after in itertools.pairwise(couriers):
                if before != after and not COURIER_MACHINE.can(
                    CourierStatus(before), CourierStatus(after)
                ):
                    report.add("state-machine", subject, f"courier {before} -> {after}")
        row = rows[aggregate].get(aggregate_id)
        if row is None:
            report.add("state-machine", subject, "events for a row that does not exist")
            continue
        if path[-1] != row["status"]:
            report.add(
                "state-machine", subject, f"history ends at {path[-1]}, row is {row['status']}"
            )
        if versions[-1] != row["version"]:
            report.add(
                "state-machine", subject, f"last event v{versions[-1]}, row v{row['version']}"
            )


# -- the pipeline -----------------------------------------------------------------------


def _check_pipeline(
    world: World,
    report: Report,
    events: list[Row],
    allowed_dead_letters: set[str] | frozenset[str],
    scope: set[str],
    scoped: bool,
) -> None:
    unpublished = [e for e in events if e["published_at"] is None]
    if unpublished:
        report.add("converged", "outbox", f"{len(unpublished)} event(s) never published")
    missing: dict[str, list[Row]] = defaultdict(list)
    for event in events:
        for subscriber in SUBSCRIPTIONS.get(event["type"], ()):
            if (subscriber.task, _key(event["id"])) not in world.inbox:
                missing[f"{event['type']} -> {subscriber.task}"].append(event)
    for pair, unrecorded in sorted(missing.items()):
        first = unrecorded[0]
        report.add(
            "inbox",
            pair,
            f"{len(unrecorded)} event(s) not recorded (first: {first['id']} of order "
            f"{first['correlation_id']})",
        )
    if world.dead_letters is None:
        return
    for row in world.dead_letters:
        text = json.dumps({k: str(v) for k, v in dict(row).items()})
        if any(allowed in text for allowed in allowed_dead_letters):
            continue
        if scoped and not any(order_id in text for order_id in scope):
            continue  # another phase's letter: that phase reports it
        report.add("dead-letter", "dead letter", _why(dict(row)) or text[:300])


def _why(letter: dict[str, Any]) -> str:
    """A dead letter told by its handler, event and error first (the event's payload is
    long, and a report cut at 300 characters would lose the error, which says why)."""
    named = {k: letter.get(k) for k in ("handler", "event_type", "event_id", "error_type")}
    if letter.get("error") is None or named["handler"] is None:
        return ""
    error = str(letter["error"])[:300]
    return " ".join(f"{k}={v}" for k, v in named.items() if v is not None) + f": {error}"
