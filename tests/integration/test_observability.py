"""Metrics and logs of the real processes: a shop of its own with JSON logs, a metrics
token and a metrics port for the relay and every worker."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app.platform import deadletters
from tests.support import env
from tests.support.api import auth, new_customer, order_body, wait_for_status
from tests.support.processes import Shop, start_shop
from tests.support.promql import alert_queries, dashboard_queries, exported_names, metric_names
from workers import QUEUES

# Starting a second shop takes a while on a busy 2-core machine.
pytestmark = [pytest.mark.observability, pytest.mark.timeout(600)]

TOKEN = "scraper-token-0123456789"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def observed_shop(sandbox_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    redis_db = env.claim_redis_db()
    try:
        with start_shop(
            sandbox_url,
            database_name=f"pizzeria_test_observed_{os.getpid()}",
            redis_db=redis_db,
            extra_env={
                "LOG_FORMAT": "json",
                "METRICS_TOKEN": TOKEN,
                "WATCHDOG_PAYMENT_MINUTES": "0.05",  # 3 s: a paused payment worker shows at once
            },
            log_dir=tmp_path_factory.mktemp("logs"),
            metrics_ports=True,
        ) as shop:
            yield shop
    finally:
        env.release_redis_dbs(redis_db)


@pytest.fixture
async def web(observed_shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=observed_shop.url, timeout=20) as client:
        yield client


async def scrape(url: str, token: str | None = TOKEN) -> tuple[Samples, dict[str, str]]:
    """Every sample (name + labels → value) and every family (name → type) at ``url``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    samples: Samples = {}
    families: dict[str, str] = {}
    for family in text_string_to_metric_families(response.text):
        families[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, families


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample's value, None when absent."""
    return samples.get((name, tuple(sorted(labels.items()))))


async def wait_for_metric(
    url: str, name: str, accept: object, timeout: float = 120.0, **labels: str
) -> Samples:
    """Scrape until ``accept(value)`` holds (it is a predicate) and return that scrape."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen = None
    while asyncio.get_running_loop().time() < deadline:
        samples, _ = await scrape(url)
        seen = value(samples, name, **labels)
        if seen is not None and accept(seen):  # type: ignore[operator]
            return samples
        await asyncio.sleep(0.3)
    raise AssertionError(f"{name}{labels} never acceptable; last {seen}")


def port_url(shop: Shop, part: str) -> str:
    return f"http://127.0.0.1:{shop.metrics_ports[part]}/metrics"


async def paid_order(web: httpx.AsyncClient) -> tuple[dict[str, str], str, str]:
    """A customer, the id of an order of theirs that got paid, and its request id."""
    customer = await new_customer(web)
    placed = await web.post("/api/orders", json=order_body(), headers=auth(customer))
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    await wait_for_status(web, customer, order_id, "paid", timeout=60)
    return customer, order_id, placed.headers["x-request-id"]


async def test_metrics_need_the_token_when_one_is_set(observed_shop: Shop) -> None:
    async with httpx.AsyncClient(base_url=observed_shop.url, timeout=10) as client:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 401 and "token" in missing.json()["detail"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert "pizzeria_queue_depth" in right.text


async def test_one_web_scrape_shows_the_shop_and_every_part_counts_its_work(
    observed_shop: Shop, web: httpx.AsyncClient
) -> None:
    _, order_id, _ = await paid_order(web)
    samples = await wait_for_metric(
        f"{observed_shop.url}/metrics", "pizzeria_orders_placed_total", lambda v: v >= 1
    )
    for partner in ("payment", "courier"):
        assert value(samples, "pizzeria_breaker_state", partner=partner) == 0
    for queue in QUEUES:
        assert value(samples, "pizzeria_queue_depth", queue=queue) is not None
        assert value(samples, "pizzeria_queue_consumers", queue=queue) == 1, queue
    assert value(samples, "pizzeria_outbox_backlog") is not None
    assert value(samples, "pizzeria_outbox_oldest_age_seconds") is not None
    assert value(samples, "pizzeria_stuck_orders") == 0
    assert value(samples, "pizzeria_sse_connections") is not None
    assert value(samples, "pizzeria_metrics_source_up", source="postgres") == 1
    assert value(samples, "pizzeria_metrics_source_up", source="redis") == 1
    assert value(samples, "pizzeria_dead_letters") == 0
    # HTTP requests by route template: an order id never becomes a label
    paths = {dict(labels).get("path") for (name, labels) in samples if "pizzeria_http" in name}
    assert "/api/orders/{order_id}" in paths
    assert not any(order_id in (path or "") for path in paths)
    created = value(
        samples,
        "pizzeria_http_requests_total",
        method="POST",
        path="/api/orders",
        status_code="201",
        app_name="pizzeria",
    )
    assert created is not None and created >= 1

    payment = await wait_for_metric(
        port_url(observed_shop, "worker-payment"),
        "pizzeria_jobs_total",
        lambda v: v >= 1,
        task="payment.capture",
        outcome="ok",
    )
    charge_calls = value(
        payment, "pizzeria_partner_call_seconds_count", partner="payment", operation="charge"
    )
    assert charge_calls is not None and charge_calls >= 1
    # the order is paid in the capture's transaction (app.subscriptions.IN_TRANSACTION)
    await wait_for_metric(
        port_url(observed_shop, "worker-payment"), "pizzeria_orders_paid_total", lambda v: v >= 1
    )
    # the web hands the placed order to the payment job itself, after its commit
    # (app.subscriptions.ENQUEUED_AFTER_COMMIT): nothing of an order is left to the relay,
    # which still exposes what it hands over (the kitchen's moves, refunds)
    web_samples, _ = await scrape(f"{observed_shop.url}/metrics")
    enqueued = value(
        web_samples, "pizzeria_follow_ups_total", task="payment.capture", outcome="enqueued"
    )
    assert enqueued is not None and enqueued >= 1
    relay_samples, _ = await scrape(port_url(observed_shop, "relay"))
    assert value(relay_samples, "pizzeria_outbox_published_total") is not None
    # the paid order's rider is asked for by the payment worker (app.subscriptions.WITH_CAPTURE)
    await wait_for_metric(
        port_url(observed_shop, "worker-payment"),
        "pizzeria_partner_call_seconds_count",
        lambda v: v >= 1,
        partner="courier",
        operation="request_pickup",
    )


async def test_sse_clients_are_counted_while_connected(
    observed_shop: Shop, web: httpx.AsyncClient
) -> None:
    customer, order_id, _ = await paid_order(web)
    url = f"{observed_shop.url}/metrics"
    async with web.stream("GET", f"/api/orders/{order_id}/events", headers=auth(customer)) as sse:
        assert sse.status_code == 200
        await wait_for_metric(url, "pizzeria_sse_connections", lambda v: v >= 1)
    await wait_for_metric(url, "pizzeria_sse_connections", lambda v: v == 0)


async def test_a_queue_nobody_consumes_shows_its_depth_and_its_stuck_orders(
    observed_shop: Shop, web: httpx.AsyncClient
) -> None:
    url = f"{observed_shop.url}/metrics"
    observed_shop.stop_worker("payment")
    try:
        await wait_for_metric(url, "pizzeria_queue_consumers", lambda v: v == 0, queue="payment")
        customer = await new_customer(web)
        placed = await web.post("/api/orders", json=order_body(), headers=auth(customer))
        assert placed.status_code == 201, placed.text
        await wait_for_metric(url, "pizzeria_queue_depth", lambda v: v >= 1, queue="payment")
        await wait_for_metric(url, "pizzeria_stuck_orders", lambda v: v >= 1)
    finally:
        observed_shop.start_worker("payment")
    # a restarted worker takes a while to start on a busy machine
    await wait_for_status(web, customer, placed.json()["id"], "paid", timeout=240)
    await wait_for_metric(url, "pizzeria_stuck_orders", lambda v: v == 0)
    await wait_for_metric(url, "pizzeria_queue_consumers", lambda v: v == 1, queue="payment")


def json_lines(log_dir: Path) -> dict[str, list[dict[str, object]]]:
    """Every part's log, parsed: each line must be one JSON object."""
    parts: dict[str, list[dict[str, object]]] = {}
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            assert isinstance(entry, dict), line
            for key in ("time", "level", "part", "message"):
                assert key in entry, line
            parts.setdefault(str(entry["part"]), []).append(entry)
    return parts


async def test_one_order_is_followed_across_every_part_by_its_correlation_id(
    observed_shop: Shop, web: httpx.AsyncClient
) -> None:
    assert observed_shop.log_dir is not None
    _, order_id, request_id = await paid_order(web)
    # the web enqueues the capture job itself (app.subscriptions.ENQUEUED_AFTER_COMMIT),
    # the payment worker makes the delivery too (app.subscriptions.WITH_CAPTURE), and
    # every part projects the events it records (no status job: app.status.projector)
    expected = {"web", "worker-payment"}
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        parts = json_lines(observed_shop.log_dir)
        following = {
            part
            for part, entries in parts.items()
            if any(entry.get("correlation_id") == order_id for entry in entries)
        }
        if expected <= following or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.3)
    assert expected <= following, f"only {following} logged order {order_id}"
    placed = [e for e in parts["web"] if e.get("correlation_id") == order_id]
    assert any(e.get("request_id") == request_id for e in placed), placed
    paid = [e for e in parts["worker-payment"] if e.get("correlation_id") == order_id]
    assert any("rider booked" in str(e["message"]) for e in paid), paid
    jobs = [e for e in parts["worker-payment"] if e.get("correlation_id") == order_id]
    assert all(e.get("event_id") for e in jobs), jobs


async def test_every_dashboard_and_alert_query_names_a_metric_the_shop_exports(
    observed_shop: Shop, web: httpx.AsyncClient
) -> None:
    await paid_order(web)  # so that every labelled family has samples too
    exported: set[str] = set()
    for url in [
        f"{observed_shop.url}/metrics",
        *(port_url(observed_shop, part) for part in observed_shop.metrics_ports),
    ]:
        _, families = await scrape(url)
        exported |= exported_names(families)
    assert "pizzeria_http_requests_total" in exported  # the scrape did read the families
    exported |= {"up"}  # Prometheus' own series, one per target it scrapes
    for query in [*dashboard_queries(), *alert_queries()]:
        names = metric_names(query)
        assert names, query
        assert names <= exported, f"{query} names {names - exported}, which nothing exports"


async def test_a_parked_event_shows_as_a_dead_letter(observed_shop: Shop) -> None:
    """Last in this file: the shop keeps the dead letter."""
    engine = create_async_engine(observed_shop.env["DATABASE_URL"])
    try:
        await deadletters.park(
            async_sessionmaker(engine, expire_on_commit=False),
            handler="coupon.issue",
            queue="coupon",
            raw={"id": str(uuid.uuid4()), "type": "DeliveryDelivered"},
            job_id="",
            error=ValueError("a bug"),
            attempts=1,
        )
    finally:
        await engine.dispose()
    await wait_for_metric(f"{observed_shop.url}/metrics", "pizzeria_dead_letters", lambda v: v == 1)


async def test_health_tells_the_public_only_whether_the_shop_is_well(
    web: httpx.AsyncClient,
) -> None:
    """``/health`` answers on the public address too: with METRICS_TOKEN set, everyone
    gets the status alone, and only the token's holder the parts (hosts and process
    names, Redis errors, the backlog)."""
    public = await web.get("/health")
    assert public.status_code == 200
    assert public.json().keys() == {"status"} and public.json()["status"] in ("ok", "degraded")
    wrong = await web.get("/health", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.json().keys() == {"status"}
    full = (await web.get("/health", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    assert {"status", "web", "processes", "events", "watchdog"} <= full.keys()
    assert "relay" in {p["kind"] for p in full["processes"]}, full["processes"]
