"""Hypothesis throws junk at the shop's inputs, over HTTP, against the real processes.

Orders, refunds and sign-up, as JSON (``/api/...``) and as HTML forms (``/signup``,
``/checkout`` and the basket behind it): arbitrary unicode (NUL included), huge and
negative numbers, floats (NaN and infinities too, which are not JSON), nested junk, wrong
types, missing and extra fields, bodies that are not JSON at all.

Properties:
- the answer is a clean 4xx, or a 2xx/303 when the input happens to be valid; never a 5xx;
- JSON endpoints answer JSON with a ``detail``; an accepted order/sign-up says back what
  was sent;
- nothing half-written (checked in the database after the run): every order of the fuzz
  customer has its lines, its payment and its ``OrderPlaced`` event, and adds up; every
  refund has its ``RefundRequested`` event and its delivery in the matching state; no
  account exists for an email whose sign-ups were all refused.

Sync tests with a sync ``httpx.Client`` (Hypothesis drives sync functions); async helpers
and the database checks run in a worker thread with their own event loop.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.api import (
    DECLINED_CARD,
    GOOD_CARD,
    PASSWORD,
    browser_session_sync,
    delivered_order,
    new_customer,
    staff_headers,
)
from tests.support.processes import Shop

T = TypeVar("T")

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)

# Sign-ups hash a password (argon2, ~0.2 s) once they pass validation: shrinking a failure
# would take most of the time budget, so those report the first failing input as found.
FUZZ_UNSHRUNK = settings(FUZZ, phases=[Phase.explicit, Phase.generate])

# -- junk -------------------------------------------------------------------------------

# Hypothesis' own text rarely contains the characters that break things; mix them in,
# NUL (which PostgreSQL cannot store in text) the most often.
NASTY = st.sampled_from(
    ["\t", "\n", " ", "İ", "ß", "\u0301", "\u202e", "\ufeff", "\U0001f355", "'", "%", "\\"]
)
NASTY_CHAR = st.one_of(st.just("\x00"), NASTY, st.characters(), st.characters())


def nasty_text(min_size: int = 0, max_size: int = 400) -> st.SearchStrategy[str]:
    # A list joined, not ``st.text(NASTY_CHAR)``: that would merge the alphabets into one
    # set of code points and lose the weights.
    return st.lists(NASTY_CHAR, min_size=min_size, max_size=max_size).map("".join)


TEXT = st.one_of(
    st.text(),  # full unicode (no surrogates: they are not valid JSON), NUL included
    nasty_text(),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: 2**64, -10**30, ...
    st.floats(),  # NaN and infinities too: the body is then not valid JSON
    TEXT,
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
JSON_JUNK = st.recursive(  # junk that is still valid JSON
    SCALARS.filter(lambda v: v == v and v not in (float("inf"), float("-inf"))),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=4,
)
EXTRA_FIELDS = st.dictionaries(st.text(max_size=12), JSON_JUNK, max_size=3)
NOT_JSON = st.binary(max_size=64)
FieldStrategies = dict[str, st.SearchStrategy[Any]]


@st.composite
def mutated(
    draw: st.DrawFn,
    valid: FieldStrategies,
    optional: FieldStrategies,
    junk: st.SearchStrategy[Any] = JUNK,
    extras: st.SearchStrategy[dict[str, Any]] = EXTRA_FIELDS,
) -> dict[str, Any]:
    """A valid input with up to two fields replaced by any text or junk, or dropped, plus
    unknown fields. Few bad fields at a time, so the junk reaches the code behind the checks
    that other bad fields would have failed first; shrinks towards the valid input."""
    fields = draw(st.fixed_dictionaries(valid, optional=optional))
    names = sorted({*valid, *optional})
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(names))
        how = draw(st.sampled_from(["text", "text", "junk", "drop"]))
        if how == "drop":
            fields.pop(name, None)
        else:
            fields[name] = draw(TEXT if how == "text" else junk)
    return {**draw(extras), **fields}


@st.composite
def mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> Any:
    """``usual`` three times in four (and when shrinking), else ``rare``."""
    return draw(rare if draw(st.integers(0, 3)) == 3 else usual)


def json_input(valid: FieldStrategies, optional: FieldStrategies) -> st.SearchStrategy[Any]:
    """Mostly a mutated valid object; sometimes junk of any shape, or not JSON at all."""
    return mostly(mutated(valid, optional), JUNK | NOT_JSON)


FORM_JUNK = st.lists(TEXT, min_size=2, max_size=3)  # the field repeated
FORM_EXTRAS = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda k: k != "_csrf_token"), TEXT, max_size=3
)


def form_input(valid: FieldStrategies, optional: FieldStrategies) -> st.SearchStrategy[Any]:
    return mutated(valid, optional, junk=FORM_JUNK, extras=FORM_EXTRAS)


HEADER_VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=120)

ITEMS = st.lists(
    st.fixed_dictionaries({"pizzaId": st.integers(1, 8), "qty": st.integers(1, 5)}),
    min_size=1,
    max_size=3,
)
# Lines that are themselves junk: unknown or huge ids, zero/negative/huge quantities, ...
JUNK_ITEMS = st.lists(
    st.fixed_dictionaries(
        {"pizzaId": st.integers() | SCALARS, "qty": st.integers() | SCALARS},
        optional={"note": JUNK},
    ),
    max_size=12,
)
# Around the 40 characters the schema allows, and sometimes odd.
COUPON = mostly(st.text("PIZA-23456789", min_size=8, max_size=45), nasty_text(0, 40))
ADDRESS = mostly(st.just("Via Roma 1, Napoli"), nasty_text(1, 300))
CARD = st.sampled_from([GOOD_CARD, DECLINED_CARD, "4242 4242-4242 4242"])
ORDER = json_input(
    {
        "items": mostly(ITEMS, JUNK_ITEMS),
        "address": ADDRESS,
        "cardNumber": CARD,
    },
    {"couponCode": st.none() | COUPON},
)
SIGNUP_EMAIL = st.uuids().map(lambda u: f"{u.hex[:12]}@example.com")
# Passes the shop's email check (no ``@`` or white space in the local part) yet is odd.
ODD_EMAIL = st.builds(
    lambda local, u: f"{local}{u.hex[:6]}@example.com",
    nasty_text(0, 12).map(lambda t: "".join(c for c in t if c != "@" and not c.isspace())),
    st.uuids(),
)
STRONG = st.sampled_from([PASSWORD, "Tr0ub4dor&3-and-some", "pizza oven at midnight 42"])
SIGNUP_FIELDS: FieldStrategies = {
    "email": mostly(SIGNUP_EMAIL, ODD_EMAIL | st.emails()),
    "password": mostly(STRONG, nasty_text(12, 40)),
    "name": mostly(st.just("Ada Lovelace"), nasty_text(1, 100)),
}
SIGNUP = json_input(SIGNUP_FIELDS, {})


# -- the shop, the fuzz customer and what the run did -------------------------------------


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on its own loop in a worker thread (never the
    pytest-asyncio session loop, never the main thread's current loop)."""

    async def main() -> T:
        return await factory()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(main())).result()


@dataclass
class Record:
    """What the fuzz run was told, for the database checks at the end."""

    customer: dict[str, str]
    started: datetime
    delivered_order_id: str
    order_ids: set[str] = field(default_factory=set)
    refund_ids: set[str] = field(default_factory=set)
    signups: list[tuple[str, bool]] = field(default_factory=list)  # (email, accepted)


@pytest.fixture(scope="module")
def record(shop: Shop) -> Iterator[Record]:
    """What the fuzz tests of this module were told; once the last of them has run,
    whatever order they ran in, every row they caused must be whole (an error at this
    fixture's teardown says which is not)."""
    started = datetime.now(UTC)

    async def prepare() -> Record:
        async with httpx.AsyncClient(base_url=shop.url, timeout=20) as client:
            customer = await new_customer(client, name="Junk Fuzzer")
            staff = await staff_headers(client, shop.env)
            order = await delivered_order(client, customer, staff, with_coupon=False)
        return Record(customer, started, order["id"], order_ids={order["id"]})

    fuzzed = run_async(prepare)
    yield fuzzed
    nothing_half_written(shop, fuzzed)


@pytest.fixture(scope="module")
def api(shop: Shop, record: Record) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {record.customer['token']}"}
    with httpx.Client(base_url=shop.url, timeout=20, headers=headers) as client:
        yield client


@pytest.fixture(scope="module")
def anonymous(shop: Shop) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shop.url, timeout=20) as client:
        yield client


@pytest.fixture(scope="module")
def browser(shop: Shop, record: Record) -> Iterator[tuple[httpx.Client, str]]:
    """The fuzz customer signed in through the HTML form, and the CSRF token for forms."""
    with httpx.Client(base_url=shop.url, timeout=20) as client:
        yield client, browser_session_sync(client, record.customer["email"])


def post_json(client: httpx.Client, path: str, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        path, content=content, headers={"Content-Type": "application/json", **headers}
    )


def clean_json_answer(response: httpx.Response, sent: Any, *ok: int) -> Any:
    """The answer is one of ``ok`` or a 4xx with a JSON ``detail``; never a 5xx."""
    shown = f"{response.request.method} {response.request.url.path} with {sent!r}"[:600]
    assert response.status_code < 500, f"{shown}\n-> {response.status_code} {response.text}"
    assert response.status_code in ok or 400 <= response.status_code < 500, (
        f"{shown}\n-> {response.status_code} {response.text[:300]}"
    )
    assert response.headers.get("content-type", "").startswith("application/json"), shown
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body, dict) and isinstance(body.get("detail"), str), (shown, body)
        assert body["detail"], (shown, body)
    return body


def clean_page_answer(response: httpx.Response, sent: Any, *ok: int) -> None:
    shown = f"{response.request.method} {response.request.url.path} with {sent!r}"[:600]
    assert response.status_code < 500, f"{shown}\n-> {response.status_code} {response.text[-600:]}"
    assert response.status_code in ok or 400 <= response.status_code < 500, (
        f"{shown}\n-> {response.status_code}"
    )


# -- JSON API ---------------------------------------------------------------------------


@FUZZ
@given(body=ORDER, idempotency_key=st.none() | HEADER_VALUE)
def test_order_inputs_get_a_clean_answer(
    api: httpx.Client, record: Record, body: Any, idempotency_key: str | None
) -> None:
    headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
    response = post_json(api, "/api/orders", body, **headers)
    answer = clean_json_answer(response, (body, idempotency_key), 201)
    if response.status_code != 201:
        return
    record.order_ids.add(answer["id"])
    if response.headers.get("idempotent-replayed") != "true":  # this body's own order
        assert answer["address"] == body["address"].strip(), (body, answer)
        sent = [(i["pizzaId"], i["qty"]) for i in body["items"]]
        assert [(i["pizzaId"], i["qty"]) for i in answer["items"]] == sent, (body, answer)


@FUZZ
@given(data=st.data())
def test_refund_inputs_get_a_clean_answer(
    api: httpx.Client, record: Record, data: st.DataObject
) -> None:
    codes = [r["code"] for r in api.get("/api/refund-reasons").json()]
    body = data.draw(
        json_input(
            {
                "orderId": st.just(record.delivered_order_id) | st.uuids().map(str),
                "reasonCode": st.sampled_from(codes),
            },
            {"reason": mostly(st.just("The pizza was cold."), nasty_text())},
        ),
        label="body",
    )
    response = post_json(api, "/api/refunds", body)
    answer = clean_json_answer(response, body, 201)
    if response.status_code == 201:
        record.refund_ids.add(answer["id"])
        assert answer["orderId"] == body["orderId"] and answer["status"] == "requested", answer
        # Withdraw it (FR11) so the order can be refunded again by the next examples.
        withdrawn = api.post(f"/api/refunds/{answer['id']}/cancel")
        clean_json_answer(withdrawn, f"withdraw {answer['id']}", 200)


@FUZZ_UNSHRUNK
@given(body=SIGNUP)
def test_signup_inputs_get_a_clean_answer(
    anonymous: httpx.Client, record: Record, body: Any
) -> None:
    response = post_json(anonymous, "/api/auth/signup", body)
    answer = clean_json_answer(response, body, 201)
    email = body.get("email") if isinstance(body, dict) else None
    if isinstance(email, str):
        record.signups.append((email, response.status_code == 201))
    if response.status_code == 201:
        assert answer["email"] == body["email"].strip().lower(), (body, answer)
        assert answer["name"] == body["name"].strip(), (body, answer)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param(  # the schema allows 40 characters
            "/api/orders",
            {
                "items": [{"pizzaId": 1, "qty": 1}],
                "address": "Via Roma 1",
                "cardNumber": GOOD_CARD,
                "couponCode": "PIZZA-" + "A" * 34,
            },
            id="coupon-code-of-40",
        ),
        pytest.param(  # 212 characters; "İ".lower() is two characters long
            "/api/auth/signup",
            {"email": "İ" * 200 + "@example.com", "password": PASSWORD, "name": "Ada"},
            id="email-that-grows-when-lowercased",
        ),
    ],
)
def test_boundary_inputs_get_a_clean_answer(
    api: httpx.Client, record: Record, path: str, body: dict[str, Any]
) -> None:
    response = post_json(api, path, body)
    if path == "/api/auth/signup":
        record.signups.append((body["email"], response.status_code == 201))
    answer = clean_json_answer(response, body, 201)
    if path == "/api/orders" and response.status_code == 201:
        record.order_ids.add(answer["id"])


# -- HTML forms -------------------------------------------------------------------------


@FUZZ_UNSHRUNK
@given(
    fields=form_input(
        SIGNUP_FIELDS, {"next": st.sampled_from(["/", "/orders", "//evil.example", "https://x"])}
    )
)
def test_signup_form_gets_a_clean_answer(
    shop: Shop, record: Record, fields: dict[str, Any]
) -> None:
    with httpx.Client(base_url=shop.url, timeout=20) as browser:  # a new visitor each time
        browser.get("/signup")
        form = {**fields, "_csrf_token": browser.cookies["pizzeria_csrf"]}
        response = browser.post("/signup", data=form)
    clean_page_answer(response, fields, 303)
    if isinstance(fields.get("email"), str):
        record.signups.append((fields["email"], response.status_code == 303))
    if response.status_code == 303:
        location = response.headers["location"]
        assert location.startswith("/") and not location.startswith("//"), location


@FUZZ
@given(
    fields=form_input(
        {"address": ADDRESS, "card_number": CARD},
        {
            "coupon_code": st.just("") | COUPON,
            "idempotency_key": st.uuids().map(str),
        },
    )
)
def test_checkout_form_gets_a_clean_answer(
    browser: tuple[httpx.Client, str], record: Record, fields: dict[str, Any]
) -> None:
    client, csrf = browser
    added = client.post("/basket/add", data={"pizza_id": "1", "qty": "1", "_csrf_token": csrf})
    assert added.status_code == 303, added.text
    response = client.post("/checkout", data={**fields, "_csrf_token": csrf})
    clean_page_answer(response, fields, 303)
    if response.status_code == 303:
        location = response.headers["location"]
        assert location.startswith("/orders/"), location
        record.order_ids.add(location.removeprefix("/orders/"))


@FUZZ
@given(
    pizza_id=st.one_of(st.integers(-3, 12).map(str), st.integers().map(str), TEXT, FORM_JUNK),
    qty=st.one_of(st.integers(-3, 30).map(str), st.integers().map(str), TEXT, FORM_JUNK),
    htmx=st.booleans(),
)
def test_basket_junk_never_breaks_the_shop(
    shop: Shop, pizza_id: str | list[str], qty: str | list[str], htmx: bool
) -> None:
    """What goes into the basket is what checkout and every page read back later."""
    with httpx.Client(base_url=shop.url, timeout=20) as visitor:  # a new visitor each time
        visitor.get("/login")
        csrf = visitor.cookies["pizzeria_csrf"]
        headers = {"HX-Request": "true"} if htmx else {}
        form = {"pizza_id": pizza_id, "qty": qty, "_csrf_token": csrf}
        added = visitor.post("/basket/add", data=form, headers=headers)
        clean_page_answer(added, form, 200, 204, 303)
        clean_page_answer(visitor.get("/"), ("menu after", form), 200)


# -- nothing half-written ---------------------------------------------------------------


def nothing_half_written(shop: Shop, record: Record) -> None:
    """Every row the fuzz run caused is whole: run after all of it (``record``'s teardown),
    not by file order."""
    dsn = shop.env["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://", 1)
    customer_id = uuid.UUID(record.customer["id"])

    async def read() -> dict[str, list[asyncpg.Record]]:
        conn = await asyncpg.connect(dsn)
        try:
            return {
                "orders": await conn.fetch(ORDERS, customer_id),
                "refunds": await conn.fetch(REFUNDS, customer_id),
                "users": await conn.fetch(
                    "SELECT email FROM accounts.users WHERE created_at >= $1", record.started
                ),
            }
        finally:
            await conn.close()

    rows = run_async(read)

    orders = {str(r["id"]): r for r in rows["orders"]}
    assert set(orders) == record.order_ids, "orders in the database vs orders answered"
    for order_id, r in orders.items():
        assert r["lines"] >= 1, f"order {order_id} has no lines: {dict(r)}"
        assert r["payments"] == 1, f"order {order_id} has {r['payments']} payments"
        assert r["placed_events"] == 1, f"order {order_id}: {r['placed_events']} OrderPlaced"
        assert r["subtotal"] - r["discount_amount"] == r["total_amount"], dict(r)

    refunds = {str(r["id"]): r for r in rows["refunds"]}
    assert set(refunds) == record.refund_ids, "refunds in the database vs refunds answered"
    expected = {
        "requested": {"return_requested", "returned"},  # returned: the money is on its way
        "completed": {"returned"},
        "cancelled": {"delivered"},
    }
    for refund_id, r in refunds.items():
        assert r["requested_events"] == 1, f"refund {refund_id} has no RefundRequested event"
        if r["latest"]:  # an order's older refunds were cancelled before the newest one
            assert r["delivery_status"] in expected[r["status"]], dict(r)

    created = {r["email"] for r in rows["users"]}
    accepted = {email.strip().lower() for email, ok in record.signups if ok}
    refused = {email.strip().lower() for email, ok in record.signups if not ok} - accepted
    assert accepted <= created, accepted - created
    assert not refused & created, f"accounts created by refused sign-ups: {refused & created}"


ORDERS = """
SELECT o.id, o.total_amount, o.discount_amount,
       (SELECT count(*) FROM ordering.order_lines l WHERE l.order_id = o.id) AS lines,
       (SELECT coalesce(sum(l.qty * l.unit_price), 0)
          FROM ordering.order_lines l WHERE l.order_id = o.id) AS subtotal,
       (SELECT count(*) FROM payment.payments p WHERE p.order_id = o.id) AS payments,
       (SELECT count(*) FROM platform.outbox e
         WHERE e.correlation_id = o.id::text AND e.type = 'OrderPlaced') AS placed_events
  FROM ordering.orders o
 WHERE o.customer_id = $1
"""

REFUNDS = """
SELECT r.id, r.status, d.status AS delivery_status,
       r.created_at = max(r.created_at) OVER (PARTITION BY r.order_id) AS latest,
       (SELECT count(*) FROM platform.outbox e
         WHERE e.aggregate_id = r.id::text AND e.type = 'RefundRequested') AS requested_events
  FROM refund.refunds r
  LEFT JOIN delivery.deliveries d ON d.order_id = r.order_id
 WHERE r.customer_id = $1
"""
