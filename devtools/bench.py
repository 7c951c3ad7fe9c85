"""``pizzeria bench orders``: how fast the shop takes orders, and what that costs.

Two measurements at the same concurrency, for the same time, after the same warm-up:

- ``api``: ``POST /api/orders`` against a RUNNING shop, as a signed-up customer with a
  fresh ``Idempotency-Key`` per order, from ``concurrency`` tasks sharing one HTTP client;
- ``raw``: the SQL transaction the issue measured the shop against (pizzas read, then
  BEGIN, order, lines, pending payment, outbox event + NOTIFY, first order view, COMMIT:
  statement by statement, as ``place_order`` sent it until round 37), run directly with
  asyncpg. The ratio ``api/raw`` is what the web stack, auth, validation and the ORM cost
  over that transaction;
- ``raw, one statement``: the SQL ``place_order`` sends now (pizzas read, then order,
  lines, payment, outbox event and view as one statement, no BEGIN or COMMIT:
  ``app.platform.driver``'s added rows), run the same way: ``api/raw-one`` is the stricter
  ratio, the database work done as cheaply as the shop does it.

The raw rows must not disturb the shop: they belong to a dedicated customer id that no
account has, and their outbox events are written already published, so the relay never
hands them to a worker (no charge, no projection).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import click
import httpx

CARD = "4242424242424242"
ADDRESS = "Via dei Benchmark 1, Napoli"
#: Owner of every row the raw run writes; no account has this id.
RAW_CUSTOMER_ID = uuid.uuid5(uuid.NAMESPACE_URL, "https://pizzeria.test/bench/raw-customer")

Operation = Callable[[], Awaitable[str | None]]  # None when it worked, else why not


class Meter(Protocol):
    """Told when a load run's tasks start and when the last has finished: what it
    measures between the two (CPU) covers exactly the operations of ``Result.completed``."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Result:
    """Latencies (seconds) of the operations that worked, in the measured window only."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    #: operations that worked, warm-up included (what a ``Meter`` measured went to them)
    completed: int = 0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile in milliseconds (0 when nothing was measured)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1] * 1000

    def line(self, label: str, unit: str) -> str:
        return (
            f"{label:<5} {unit}={self.rate:.1f} p50={self.percentile(50):.1f}ms "
            f"p90={self.percentile(90):.1f}ms p99={self.percentile(99):.1f}ms "
            f"max={self.percentile(100):.1f}ms errors={sum(self.errors.values())} "
            f"n={len(self.latencies)}"
        )


async def run_load(
    operation: Operation,
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    rate: float | None = None,
    meter: Meter | None = None,
) -> Result:
    """Run ``operation`` back to back from ``concurrency`` tasks; measure after the warm-up.
    With ``rate``, the operations start on a schedule instead, ``rate`` a second from
    the first (an arrival rate: a shop that keeps up answers each before the next is due;
    one that cannot falls behind the schedule, which ``Result.rate`` then shows).

    Only operations that start inside the window count; the rate divides them by the time
    from the window's start until the last of them finished. ``meter`` runs from the
    first task's start to the last one's end, over the warm-up too (``Result.completed``).
    """
    result = Result()
    if meter is not None:
        meter.start()
    began = time.perf_counter()
    measure_from = began + warmup
    stop_at = measure_from + duration
    slots = itertools.count()

    async def worker() -> None:
        while True:
            if rate is not None:
                due = began + next(slots) / rate
                if due >= stop_at:
                    return
                await asyncio.sleep(due - time.perf_counter())
            if (started := time.perf_counter()) >= stop_at:
                return
            try:
                error = await operation()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:200]
            took = time.perf_counter() - started
            result.completed += error is None
            if started >= measure_from:
                if error is None:
                    result.latencies.append(took)
                else:
                    result.errors[error] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if meter is not None:
        meter.stop()
    result.elapsed = max(time.perf_counter(), stop_at) - measure_from
    return result


# --------------------------------------------------------------------------- the API run


class ApiCustomer:
    """A freshly signed-up bench customer; renews its token when it expires mid-run."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.email = f"bench-{secrets.token_hex(6)}@pizzeria.test"
        self.password = secrets.token_urlsafe(18)
        self.headers: dict[str, str] = {}
        self._renewing = asyncio.Lock()

    async def sign_up(self) -> None:
        response = await self.client.post(
            "/api/auth/signup",
            json={"email": self.email, "password": self.password, "name": "Bench Customer"},
        )
        if response.status_code != 201:
            raise click.ClickException(f"signup failed: {response.status_code} {response.text}")
        await self.renew(self.headers)

    async def renew(self, seen: dict[str, str]) -> None:
        async with self._renewing:
            if seen is not self.headers:  # another task renewed it meanwhile
                return
            response = await self.client.post(
                "/api/auth/token", data={"username": self.email, "password": self.password}
            )
            if response.status_code != 200:
                raise click.ClickException(f"token failed: {response.status_code} {response.text}")
            self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _two_pizzas(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, int]]:
    response = await client.get("/api/menu", headers=headers)
    response.raise_for_status()
    ids = [int(p["id"]) for p in response.json()][:2]
    if len(ids) < 2:
        raise click.ClickException("the menu needs at least two pizzas")
    return [{"pizzaId": ids[0], "qty": 2}, {"pizzaId": ids[1], "qty": 1}]


def open_client(url: str, concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(30.0, pool=60.0)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout)


async def bench_customer(client: httpx.AsyncClient) -> tuple[ApiCustomer, dict[str, Any]]:
    """A signed-up customer and the order body every bench order uses."""
    try:
        customer = ApiCustomer(client)
        await customer.sign_up()
        items = await _two_pizzas(client, customer.headers)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the shop at {client.base_url}: {exc}") from exc
    return customer, {"items": items, "address": ADDRESS, "cardNumber": CARD}


async def place_one(
    client: httpx.AsyncClient, customer: ApiCustomer, body: dict[str, Any]
) -> tuple[str | None, str | None]:
    """Place one order: (its id, None) or (None, why not)."""
    headers = customer.headers
    response = await client.post(
        "/api/orders", json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
    )
    if response.status_code == 201:
        return str(response.json()["id"]), None
    if response.status_code == 401:
        await customer.renew(headers)
    return None, f"HTTP {response.status_code}: {response.text[:120]}"


async def bench_api(
    client: httpx.AsyncClient,
    customer: ApiCustomer,
    body: dict[str, Any],
    concurrency: int,
    warmup: float,
    duration: float,
    placed: list[str],
    rate: float | None = None,
    meter: Meter | None = None,
) -> Result:
    """``POST /api/orders`` back to back, or ``rate`` a second; every order placed (warm-up
    too) goes to ``placed``.

    Through aiohttp, not ``client`` (httpx): the bench shares the shop's cores, and httpx
    spent about three times aiohttp's CPU on each order it placed (``bench client`` in the
    table), CPU the shop's parts then lacked."""
    payload = json.dumps(body).encode()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        str(client.base_url), connector=connector, timeout=timeout
    ) as session:

        async def place_order() -> str | None:
            headers = customer.headers
            extra = {"Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"}
            async with session.post(
                "/api/orders", data=payload, headers={**headers, **extra}
            ) as response:
                if response.status == 201:
                    placed.append(str((await response.json())["id"]))
                    return None
                text = await response.text()
            if response.status == 401:
                await customer.renew(headers)
            return f"HTTP {response.status}: {text[:120]}"

        return await run_load(
            place_order,
            concurrency=concurrency,
            warmup=warmup,
            duration=duration,
            rate=rate,
            meter=meter,
        )


def raw_lines(body: dict[str, Any]) -> list[dict[str, int]]:
    return [{"pizza_id": i["pizzaId"], "qty": i["qty"]} for i in body["items"]]


# --------------------------------------------------------------------------- the raw run

SELECT_PIZZAS = "SELECT id, name, price FROM menu.pizzas WHERE id = ANY($1) AND available"
INSERT_ORDER = """
INSERT INTO ordering.orders
    (id, customer_id, status, total_amount, discount_amount, coupon_code, currency, address,
     idempotency_key, version, created_at, updated_at)
VALUES ($1, $2, 'placed', $3, 0, NULL, $4, $5, $6, 1, $7, $7)
ON CONFLICT (customer_id, idempotency_key) DO NOTHING
RETURNING id
"""
SELECT_EXISTING = "SELECT id FROM ordering.orders WHERE customer_id = $1 AND idempotency_key = $2"
INSERT_LINE = """
INSERT INTO ordering.order_lines (order_id, position, pizza_id, name, qty, unit_price)
VALUES ($1, $2, $3, $4, $5, $6)
"""
INSERT_PAYMENT = """
INSERT INTO payment.payments
    (id, order_id, amount, currency, status, card_last4, payment_method, cancel_requested,
     version, created_at, updated_at)
VALUES ($1, $2, $3, $4, 'pending', $5, $6, false, 1, $7, $7)
"""
# Written already published: the relay only picks rows whose published_at IS NULL, and
# the reconciler only those enqueued a while ago (enqueued_at NULL: never), so no job is
# ever tried for these made-up orders; ``delete_raw_orders`` takes them away after the run.
INSERT_OUTBOX = """
INSERT INTO platform.outbox
    (id, type, aggregate_type, aggregate_id, correlation_id, causation_id, occurred_at,
     payload, published_at)
VALUES ($1, 'OrderPlaced', 'order', $2, $2, NULL, $3, $4::jsonb, now())
"""
NOTIFY = "SELECT pg_notify('outbox', '')"
INSERT_VIEW = """
INSERT INTO status.order_views (order_id, customer_id, version, sources, doc, created_at,
                                updated_at)
VALUES ($1, $2, 1, $3::jsonb, $4::jsonb, $5, $5)
ON CONFLICT DO NOTHING
RETURNING order_id
"""


async def place_order_sql(
    conn: Any, lines: list[dict[str, int]], currency: str, customer_id: uuid.UUID
) -> None:
    """``place_order``'s transaction as the issue measured it, statement for statement."""
    key = uuid.uuid4().hex
    async with conn.transaction():
        order = await _new_raw_order(conn, lines, currency, customer_id)
        inserted = await conn.fetchval(
            INSERT_ORDER,
            order.id,
            customer_id,
            order.total,
            currency,
            ADDRESS,
            key,
            order.now,
        )
        if inserted is None:
            await conn.fetchval(SELECT_EXISTING, customer_id, key)
            return
        items = [
            (order.id, i, item["pizzaId"], item["name"], item["qty"], item["unitPrice"])
            for i, item in enumerate(order.items)
        ]
        await conn.executemany(INSERT_LINE, items)
        await conn.execute(
            INSERT_PAYMENT,
            uuid.uuid4(),
            order.id,
            order.total,
            currency,
            CARD[-4:],
            "pm_bench",
            order.now,
        )
        await conn.execute(
            INSERT_OUTBOX, uuid.uuid4(), str(order.id), order.now, json.dumps(order.payload)
        )
        await conn.execute(NOTIFY)
        await conn.fetchval(
            INSERT_VIEW,
            order.id,
            customer_id,
            json.dumps({"order": 1, "payment": 1}),
            json.dumps(order.doc),
            order.now,
        )


@dataclass(frozen=True)
class _RawOrder:
    """What both raw runs write for one order, from the pizzas read."""

    id: uuid.UUID
    now: datetime
    total: int
    items: list[dict[str, Any]]
    payload: dict[str, Any]
    doc: dict[str, Any]


async def _new_raw_order(
    conn: Any, lines: list[dict[str, int]], currency: str, customer_id: uuid.UUID
) -> _RawOrder:
    pizzas = {
        row["id"]: row
        for row in await conn.fetch(SELECT_PIZZAS, [line["pizza_id"] for line in lines])
    }
    order_id, now = uuid.uuid4(), datetime.now(UTC)
    total = sum(pizzas[line["pizza_id"]]["price"] * line["qty"] for line in lines)
    items = [
        {
            "pizzaId": line["pizza_id"],
            "name": pizzas[line["pizza_id"]]["name"],
            "qty": line["qty"],
            "unitPrice": pizzas[line["pizza_id"]]["price"],
        }
        for line in lines
    ]
    payload = {
        "orderId": str(order_id),
        "customerId": str(customer_id),
        "items": items,
        "totalAmount": total,
        "discountAmount": 0,
        "couponCode": None,
        "currency": currency,
        "address": ADDRESS,
        "version": 1,
    }
    doc = {
        "id": str(order_id),
        "status": "placed",
        "items": items,
        "totalAmount": total,
        "discountAmount": 0,
        "currency": currency,
        "address": ADDRESS,
        "createdAt": now.isoformat(),
        "payment": {"status": "pending", "failureReason": None},
        "delivery": None,
        "coupon": None,
        "refund": None,
        "timeline": [{"at": now.isoformat(), "status": "placed", "detail": "Order placed"}],
    }
    return _RawOrder(order_id, now, total, items, payload, doc)


#: ``place_order``'s one statement (``Statement.add``): each table's rows as a CTE
ONE_STATEMENT = """
WITH o AS (
    INSERT INTO ordering.orders
        (id, customer_id, status, total_amount, discount_amount, coupon_code, currency,
         address, idempotency_key, version, created_at, updated_at)
    VALUES ($1, $2, 'placed', $3, 0, NULL, $4, $5, $6, 1, $7, $7)
), l AS (
    INSERT INTO ordering.order_lines (order_id, position, pizza_id, name, qty, unit_price)
    SELECT $1, position - 1, pizza_id, name, qty, unit_price
    FROM unnest($8::int[], $9::text[], $10::int[], $11::int[])
        WITH ORDINALITY AS line(pizza_id, name, qty, unit_price, position)
), p AS (
    INSERT INTO payment.payments
        (id, order_id, amount, currency, status, card_last4, payment_method,
         cancel_requested, version, created_at, updated_at)
    VALUES ($12, $1, $3, $4, 'pending', $13, $14, false, 1, $7, $7)
), e AS (
    INSERT INTO platform.outbox
        (id, type, aggregate_type, aggregate_id, correlation_id, causation_id, occurred_at,
         payload, published_at)
    VALUES ($15, 'OrderPlaced', 'order', $1::text, $1::text, NULL, $7, $16::jsonb, now())
)
INSERT INTO status.order_views (order_id, customer_id, version, sources, doc, created_at,
                                updated_at)
VALUES ($1, $2, 1, $17::jsonb, $18::jsonb, $7, $7)
ON CONFLICT DO NOTHING
"""


async def place_order_one_statement(
    conn: Any, lines: list[dict[str, int]], currency: str, customer_id: uuid.UUID
) -> None:
    """``place_order``'s SQL as it sends it now: the pizzas read, then one statement."""
    order = await _new_raw_order(conn, lines, currency, customer_id)
    await conn.execute(
        ONE_STATEMENT,
        order.id,
        customer_id,
        order.total,
        currency,
        ADDRESS,
        uuid.uuid4().hex,
        order.now,
        [item["pizzaId"] for item in order.items],
        [item["name"] for item in order.items],
        [item["qty"] for item in order.items],
        [item["unitPrice"] for item in order.items],
        uuid.uuid4(),
        CARD[-4:],
        "pm_bench",
        uuid.uuid4(),
        json.dumps(order.payload),
        json.dumps({"order": 1, "payment": 1}),
        json.dumps(order.doc),
    )


async def bench_raw(
    dsn: str,
    lines: list[dict[str, int]],
    concurrency: int,
    warmup: float,
    duration: float,
    meter: Meter | None = None,
    *,
    one_statement: bool = False,
) -> Result:
    """The raw run: the issue's transaction, statement by statement, or (``one_statement``)
    the SQL the shop sends now."""
    import asyncpg

    from app.platform.settings import get_settings

    currency = get_settings().shop.currency
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    try:

        async def place_order() -> str | None:
            async with pool.acquire() as conn:
                await place(conn, lines, currency, RAW_CUSTOMER_ID)
            return None

        place = place_order_one_statement if one_statement else place_order_sql

        return await run_load(
            place_order, concurrency=concurrency, warmup=warmup, duration=duration, meter=meter
        )
    finally:
        try:
            async with pool.acquire() as conn:
                await delete_raw_orders(conn)
        except Exception as exc:  # never hide the run's own error (a database away)
            click.echo(f"raw: its orders were not taken away: {exc!r}", err=True)
        await pool.close()


#: what the raw run wrote, taken away after it: a shop the bench runs against (``--url``)
#: keeps no made-up orders (each run left about 10,000, every one an unfinished outbox row
#: the reconciler's pass read through: 12 ms a pass after two runs), and the next run
#: starts from the same tables
DELETE_RAW = (
    "DELETE FROM status.order_views WHERE customer_id = $1",
    """DELETE FROM platform.outbox o USING ordering.orders r
       WHERE r.customer_id = $1 AND o.correlation_id = r.id::text""",
    """DELETE FROM payment.payments p USING ordering.orders r
       WHERE r.customer_id = $1 AND p.order_id = r.id""",
    "DELETE FROM ordering.orders WHERE customer_id = $1",  # and its lines (ON DELETE CASCADE)
)


async def delete_raw_orders(conn: Any) -> None:
    async with conn.transaction():
        for statement in DELETE_RAW:
            await conn.execute(statement, RAW_CUSTOMER_ID)


# --------------------------------------------------------------------------- the command


def _default_database_url() -> str | None:
    return os.environ.get("DATABASE_URL") or None


def bench_command() -> click.Group:
    """The ``bench`` command group (registered on ``pizzeria`` by ``app.cli``)."""

    @click.group(name="bench")
    def bench() -> None:
        """Measure the shop under load."""

    @bench.command("orders")
    @click.option(
        "--url",
        default=None,
        help="A running shop (its `pizzeria up` found through PIZZERIA_DATA_DIR for the CPU "
        "figures). Without it the bench starts a shop of its own and stops it after.",
    )
    @click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1, 1000))
    @click.option(
        "--duration",
        default=10.0,
        show_default=True,
        type=click.FloatRange(0.1),
        help="Seconds measured, per load run.",
    )
    @click.option(
        "--warmup",
        default=2.0,
        show_default=True,
        type=click.FloatRange(0.0),
        help="Seconds run before measuring, per load run.",
    )
    @click.option(
        "--lone", default=30, show_default=True, type=click.IntRange(0), help="Lone orders."
    )
    @click.option(
        "--idle",
        default=3.0,
        show_default=True,
        type=click.FloatRange(0.0),
        help="Seconds of idle CPU measured (taken out of the per-order cost).",
    )
    @click.option(
        "--rate",
        default=None,
        type=click.FloatRange(0.1),
        help="Place orders at this many a second (an arrival rate) instead of back to back,"
        " and report whether the backlog grows.",
    )
    @click.option(
        "--sse-viewers",
        default=0,
        show_default=True,
        type=click.IntRange(0),
        help="Live-update viewers of one order (0: no SSE run).",
    )
    @click.option(
        "--sse-clients",
        default=0,
        show_default=True,
        type=click.IntRange(0),
        help="Customers each watching its own order on one web process (0: no such run).",
    )
    @click.option(
        "--sse-rate",
        default=50.0,
        show_default=True,
        type=click.FloatRange(0.1),
        help="Order events per second while --sse-clients watch.",
    )
    @click.option(
        "--alone",
        is_flag=True,
        help="Also place orders with the relay and the workers paused: placement's own CPU"
        " per order by part, against a raw transaction's.",
    )
    @click.option(
        "--database-url",
        default=_default_database_url,
        help="The shop's database, with --url [default: $DATABASE_URL].",
    )
    @click.option(
        "--json",
        "json_path",
        default=None,
        help="Also write the figures as JSON here ('-': stdout).",
    )
    @click.option(
        "--repeat",
        default=1,
        show_default=True,
        type=click.IntRange(1, 50),
        help="Run it this many times on the one shop and add the median and range of the"
        " key figures (one run's api/raw can be a fifth off the next one's).",
    )
    def orders(
        url: str | None,
        concurrency: int,
        duration: float,
        warmup: float,
        lone: int,
        idle: float,
        rate: float | None,
        sse_viewers: int,
        sse_clients: int,
        sse_rate: float,
        alone: bool,
        database_url: str | None,
        json_path: str | None,
        repeat: int,
    ) -> None:
        """Placement rate and latency (API and raw asyncpg), place -> paid, throughput
        through payment, CPU per order per process, and (optionally) live updates."""
        from devtools.bench_run import (
            Options,
            Report,
            repeat_summary,
            run,
            summary_table,
            table,
            write_json,
        )
        from devtools.bench_shop import Shop, running_shop, shop_env, started_shop

        options = Options(concurrency, duration, warmup, lone, idle, sse_viewers)
        options.sse_clients, options.sse_rate = sse_clients, sse_rate
        options.rate, options.alone = rate, alone
        if sse_clients:
            from devtools.bench_sse import raise_fd_limit

            raise_fd_limit(sse_clients * 2 + 256)  # the shop started below inherits it

        reports: list[Report] = []

        def runs(shop: Shop) -> None:
            for turn in range(1, repeat + 1):
                if repeat > 1:
                    click.echo(f"run {turn} of {repeat} …", err=True)
                reports.append(asyncio.run(run(shop, options)))
                click.echo(table(reports[-1], options))

        try:
            if url:
                runs(running_shop(url.rstrip("/"), database_url))
            else:
                live_updates = bool(sse_viewers or sse_clients)
                with started_shop(shop_env(live_updates=live_updates)) as shop:
                    runs(shop)
        finally:  # a run that failed keeps the runs before it
            if repeat > 1 and reports:
                click.echo(summary_table(repeat_summary([r.as_json() for r in reports])))
            if json_path and reports:
                write_json(reports if repeat > 1 else reports[0], json_path)

    @bench.command("statements")
    @click.option(
        "--database-url",
        default=_default_database_url,
        help="A migrated database [default: $DATABASE_URL, else `pizzeria up`'s].",
    )
    @click.option("--count", default=3000, show_default=True, type=click.IntRange(10))
    def statements(database_url: str | None, count: int) -> None:
        """CPU per statement through SQLAlchemy, on the driver, and asyncpg alone."""
        from devtools.bench_statements import statement_costs
        from devtools.bench_statements import table as statements_table
        from devtools.embedded import use_running_shop

        if database_url is None:
            if (data_dir := use_running_shop()) is not None:
                raise click.ClickException(
                    f"no database: set DATABASE_URL or run `pizzeria up` (data in {data_dir})"
                )
            database_url = os.environ["DATABASE_URL"]
        costs = asyncio.run(statement_costs(database_url, count))
        click.echo(statements_table(costs, count))

    return bench
