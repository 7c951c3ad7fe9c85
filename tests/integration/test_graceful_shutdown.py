"""Graceful shutdown with real processes: what a rolling update or a scale-down does.

- web: unready at once on SIGTERM, still serving while the balancer notices, then stops
  accepting, finishes requests in flight and ends SSE streams with a ``retry:`` hint;
- worker: takes no new job and finishes the one it is running;
- relay: stops between two batches (a batch is one transaction), never inside one.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from app.platform.relay import job_id, relay_batch
from app.subscriptions import SUBSCRIPTIONS
from tests.support import env
from tests.support.api import auth, new_customer, order_body, paid_order, wait_for
from tests.support.processes import Shop, free_port, spawn, start_redis, stop, wait_http
from tests.support.sse import SseStream, read_stream

pytestmark = [pytest.mark.shutdown, pytest.mark.timeout(600)]

DRAIN_SECONDS = 1.5


@pytest.fixture
def replica(shop: Shop) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """One more web replica of the running shop (same database and Redis)."""
    port = free_port()
    process = spawn(
        ["serve", "--port", str(port)],
        {**shop.env, "SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS), "SHUTDOWN_GRACE_SECONDS": "10"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health/ready", process, timeout=120)
        yield url, process
    finally:
        stop([process])


async def _wait_refused(url: str, timeout: float = 10.0) -> float:
    """Poll until the server refuses connections; return when (monotonic)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1) as probe:
        while time.monotonic() < deadline:
            try:
                await probe.get(f"{url}/health/live")
            except httpx.ConnectError:
                return time.monotonic()
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} still accepts connections after {timeout}s")


async def test_the_web_drains_then_closes_finishing_requests_and_ending_streams_with_retry(
    client: httpx.AsyncClient, replica: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, process = replica
    customer = await new_customer(client)
    order = await paid_order(client, customer)

    async with httpx.AsyncClient(base_url=url, timeout=20) as web:
        # a live order page on this replica
        stream = SseStream()
        opened = asyncio.Event()
        reader = asyncio.create_task(
            read_stream(web, f"/api/orders/{order['id']}/events", auth(customer), stream, opened)
        )
        await asyncio.wait_for(opened.wait(), 10)

        # a request in flight: its body is still arriving when the socket closes
        closed = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            body = json.dumps(order_body()).encode()
            yield body[:10]
            await closed.wait()
            await asyncio.sleep(0.3)
            yield body[10:]

        headers = {**auth(customer), "Content-Type": "application/json"}
        in_flight = asyncio.create_task(
            web.post("/api/orders", content=slow_body(), headers=headers)
        )
        await asyncio.sleep(0.3)  # let the request's head reach the server
        assert not in_flight.done()

        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        ready = await web.get("/health/ready")
        assert ready.status_code == 503, "unready at once: the balancer stops sending traffic"
        assert "draining" in ready.json()["detail"]
        assert "Retry-After" in ready.headers
        menu = await web.get("/api/menu", headers=auth(customer))
        assert menu.status_code == 200, "still serving while the balancer has not noticed"
        assert menu.headers["connection"] == "close", (
            "no kept-alive connection to close under a request"
        )
        assert (await web.get("/health/live")).status_code == 200, "alive: no restart wanted"

        refused_at = await _wait_refused(url)
        assert refused_at - signalled >= DRAIN_SECONDS * 0.8, "closed only after the drain"
        closed.set()

        placed = await asyncio.wait_for(in_flight, 15)
        assert placed.status_code == 201, placed.text
        await asyncio.wait_for(reader, 10)

    assert stream.error is None, stream.error
    assert stream.messages and stream.messages[0].event == "order", "current state first"
    assert stream.ended_at is not None and stream.ended_at - signalled >= DRAIN_SECONDS * 0.8
    assert stream.retry_ms is not None and 500 <= stream.retry_ms <= 1500, "reconnect hint"
    assert await asyncio.to_thread(process.wait, 15) == 0, "a clean exit within the grace"

    # the order placed during the shutdown is a real one, carried through by the shop
    await wait_for(
        client, customer, placed.json()["id"], lambda v: v["status"] == "paid", "paid", 20
    )


async def test_a_worker_finishes_the_job_it_is_running_and_takes_no_new_one(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, shop: Shop
) -> None:
    customer = await new_customer(client)
    redis = Redis.from_url(shop.env["REDIS_URL"])
    shop.stop_worker("payment")
    worker = None
    try:
        # placed while no payment worker runs (the web checks the card with the provider
        # quickly); then the provider turns slow, for the charge only
        first = await client.post("/api/orders", json=order_body(), headers=auth(customer))
        assert first.status_code == 201, first.text
        await sandbox.put("/sandbox/knobs/payment", json={"latencyMs": 4000})
        worker = spawn(
            ["worker", "payment"],
            {**shop.env, "PARTNER_TIMEOUT": "15", "SHUTDOWN_JOB_SECONDS": "30"},
        )
        # the charge has started: this worker holds the payment job's lease (the other
        # queues' workers hold leases of their own now and then: those say nothing)
        charging = "arq:in-progress:*:payment.capture"
        deadline = time.monotonic() + 120
        while not (leases := await redis.keys(charging)):
            assert time.monotonic() < deadline, "the payment worker never took the job"
            assert worker.poll() is None, "the payment worker died"
            await asyncio.sleep(0.05)

        worker.send_signal(signal.SIGTERM)
        # still charging when the signal came (the provider takes 4 s for it): what
        # follows is the drain of a running job, not the exit of an idle worker
        assert await redis.exists(*leases), "the charge ended before the signal"
        await sandbox.put("/sandbox/knobs/payment", json={"latencyMs": 0})
        second = await client.post("/api/orders", json=order_body(), headers=auth(customer))
        assert second.status_code == 201, second.text
        assert await asyncio.to_thread(worker.wait, 60) == 0

        # no payment worker runs now: whatever was charged, the stopped one charged
        await wait_for(
            client, customer, first.json()["id"], lambda v: v["status"] == "paid", "paid", 60
        )
        pending = await client.get(f"/api/orders/{second.json()['id']}", headers=auth(customer))
        assert pending.json()["status"] == "placed", "a stopping worker takes no new job"
    finally:
        if worker is not None:
            stop([worker])
        await sandbox.put("/sandbox/knobs/payment", json={"latencyMs": 0})
        shop.start_worker("payment")
        await redis.aclose()
    await wait_for(
        client, customer, second.json()["id"], lambda v: v["status"] == "paid", "paid", 60
    )


@pytest.mark.parametrize("part", [["relay"], ["worker", "payment"]], ids=["relay", "worker"])
async def test_a_part_stopped_while_it_waits_for_redis_exits_cleanly(
    shop: Shop, part: list[str], tmp_path: Path
) -> None:
    """A pod scaled down or rolled while Redis is away: SIGTERM stops the part at once
    with 0 (not Python's default -15, and not after Redis is back)."""
    alive = tmp_path / "alive"
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    process = spawn(part, {**shop.env, "REDIS_URL": unreachable, "LIVENESS_FILE": str(alive)})
    try:
        deadline = time.monotonic() + 120
        while not alive.exists():  # started up: its loop beats, Redis still unreachable
            assert time.monotonic() < deadline, f"{part} never started"
            assert process.poll() is None, f"{part} died with {process.returncode}"
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 20) == 0
    finally:
        stop([process])


@pytest.fixture
def relay_database() -> Iterator[str]:
    name = f"pizzeria_test_relaystop_{env._RUN}"
    try:
        yield env.fresh_database(name, flush=False)
    finally:
        env.drop_database(name)


@pytest.fixture
def relay_redis() -> Iterator[str]:
    with start_redis() as url:
        yield url


BATCH = inspect.signature(relay_batch).parameters["limit"].default


async def test_the_relay_stops_between_batches(relay_database: str, relay_redis: str) -> None:
    database, redis_url = relay_database, relay_redis
    dsn = database.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn)
    try:
        rows = [
            (uuid.uuid4(), "OrderPlaced", "order", str(uuid.uuid4()), "{}")
            for _ in range(BATCH * 40)
        ]
        await conn.executemany(
            "INSERT INTO platform.outbox (id, type, aggregate_type, aggregate_id,"
            " correlation_id, occurred_at, payload) VALUES ($1, $2, $3, $4, $4, now(), $5)",
            rows,
        )
        relay = spawn(["relay"], {"DATABASE_URL": database, "REDIS_URL": redis_url})
        try:
            deadline = time.monotonic() + 30
            while not await conn.fetchval(
                "SELECT count(*) FROM platform.outbox WHERE published_at IS NOT NULL"
            ):
                assert time.monotonic() < deadline, "the relay never published"
                assert relay.poll() is None, "the relay died"
                await asyncio.sleep(0.01)
            relay.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(relay.wait, 20) == 0
        finally:
            stop([relay])
        published = await conn.fetch(
            "SELECT id FROM platform.outbox WHERE published_at IS NOT NULL"
        )
    finally:
        await conn.close()
    redis = Redis.from_url(redis_url)
    try:
        queued = {key.decode() for key in await redis.keys("arq:job:*")}
    finally:
        await redis.aclose()

    assert 0 < len(published) < len(rows), "stopped before the backlog was drained"
    assert len(published) % BATCH == 0, f"{len(published)} published: a batch was cut short"
    subscribers = SUBSCRIPTIONS["OrderPlaced"]  # whoever the shop wires to it today
    assert queued == {
        f"arq:job:{job_id(row['id'], sub.task)}" for row in published for sub in subscribers
    }, "exactly the published events have their jobs"
