"""Fault injectors: each runs next to the workload, does its damage, puts things back.

A fault is an async function of the ``Chaos`` context; it returns when the fault is over
(the process restarted, PostgreSQL back, the partner healthy again), which is the moment
the time to converge is measured from. Blocking steps run in threads so the workload keeps
going meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.exceptions import RedisError

from app.platform.events import Event
from app.platform.redis import dumps_job, loads_job
from app.subscriptions import SUBSCRIPTIONS
from tests.chaos.services import QUEUES, Shop


@dataclass
class Chaos:
    """What a fault may touch: the shop's processes and services, and this phase's orders."""

    shop: Shop
    orders: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: event ids of poison messages sent on purpose: they must end as dead letters
    poison: set[str] = field(default_factory=set)

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless the workload finished first; True when it did."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        return self.stop.is_set()

    async def jobs(self) -> ArqRedis:
        settings = RedisSettings.from_dsn(self.shop.redis.url)
        settings.conn_retries = 0
        return await create_pool(settings, job_serializer=dumps_job, job_deserializer=loads_job)

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.shop.postgres.dsn())


Fault = Callable[[Chaos], Awaitable[None]]


async def nothing(chaos: Chaos) -> None:
    """The baseline: the workload alone must converge, or no fault result means anything."""


# -- processes --------------------------------------------------------------------------


async def _job_running_on(chaos: Chaos, queue: str, within: float) -> bool:
    """Wait until a job of ``queue`` is in progress (arq's ``in-progress`` key); False
    when none showed up in time (or Redis is away, as in the combined run)."""
    try:
        return await _find_running(chaos, queue, within)
    except (RedisError, OSError):
        return False


async def _find_running(chaos: Chaos, queue: str, within: float) -> bool:
    jobs = await chaos.jobs()
    try:
        loop = asyncio.get_running_loop()
        until = loop.time() + within
        while loop.time() < until:
            async for key in jobs.scan_iter(match="arq:in-progress:*", count=500):
                name = key.decode() if isinstance(key, bytes) else key
                task = name.rsplit(":", 1)[-1]
                if task.split(".", 1)[0] == queue:
                    return True
            await asyncio.sleep(0.02)
        return False
    finally:
        await jobs.aclose()


async def _kill_mid_job(chaos: Chaos, queue: str, within: float) -> None:
    """SIGKILL ``queue``'s worker once it runs a job (or after ``within`` s), then start a
    fresh one (a pod restart)."""
    busy = await _job_running_on(chaos, queue, within=within)
    await asyncio.to_thread(chaos.shop.kill, f"worker-{queue}")
    chaos.notes.append(f"killed worker-{queue} {'mid-job' if busy else 'while idle'}")
    await asyncio.sleep(0.5)
    await asyncio.to_thread(chaos.shop.spawn, f"worker-{queue}")


async def worker_sigkill(chaos: Chaos) -> None:
    """SIGKILL each worker in the middle of a job, then start a fresh one. All of them
    within a few seconds: one after the other, a busy machine's restarts (10 to 20 s of
    imports each) would add up to minutes of stalled orders."""
    await chaos.sleep(1.5)
    await asyncio.gather(*(_kill_mid_job(chaos, queue, within=4) for queue in QUEUES))


async def relay_kill(chaos: Chaos) -> None:
    """SIGKILL the relay twice while events flow; it comes back two seconds later."""
    for _ in range(2):
        await chaos.sleep(2)
        await asyncio.to_thread(chaos.shop.kill, "relay")
        await asyncio.sleep(2)
        await asyncio.to_thread(chaos.shop.spawn, "relay")


async def two_relays(chaos: Chaos) -> None:
    """A second relay for the whole phase: replicas must not double anything."""
    await asyncio.to_thread(chaos.shop.add, "relay-2", "relay")
    await chaos.stop.wait()
    await asyncio.to_thread(chaos.shop.remove, "relay-2")


# -- services ---------------------------------------------------------------------------


async def redis_restart(chaos: Chaos) -> None:
    """Redis dies and comes back empty: queued jobs, results, breakers, sessions gone."""
    await chaos.sleep(3)
    await asyncio.to_thread(chaos.shop.redis.restart_empty, 1.0)


async def redis_hang(chaos: Chaos) -> None:
    """Redis hangs for eight seconds (SIGSTOP: connections open, no answer, no error):
    every part must notice on its own timer, answer 503 or wait, and carry on after."""
    await chaos.sleep(3)
    await asyncio.to_thread(chaos.shop.redis.hang, 8.0)


async def postgres_stop(chaos: Chaos) -> None:
    """PostgreSQL stopped (fast shutdown: every session cut) for ten seconds."""
    await chaos.sleep(3)
    await asyncio.to_thread(chaos.shop.postgres.outage, 10.0)


# -- partners ---------------------------------------------------------------------------


async def _knobs(chaos: Chaos, partner: str, **knobs: Any) -> None:
    async with httpx.AsyncClient(base_url=chaos.shop.sandbox_url, timeout=10) as client:
        response = await client.put(f"/sandbox/knobs/{partner}", json=knobs)
        response.raise_for_status()


async def _misbehave(chaos: Chaos, seconds: float, **knobs: Any) -> None:
    for partner in ("payment", "courier"):
        await _knobs(chaos, partner, **knobs)
    try:
        await asyncio.sleep(seconds)
    finally:
        for partner in ("payment", "courier"):
            await _knobs(chaos, partner, latencyMs=0, errorRate=0.0, down=False)


async def partner_slow(chaos: Chaos) -> None:
    """Both partners answer after 2.5 s (beyond our 2 s timeout) for 8 s: the calls time
    out although the partner goes on and does the work."""
    await chaos.sleep(2)
    await _misbehave(chaos, 8, latencyMs=2500)


async def partner_down(chaos: Chaos) -> None:
    """Both partners answer 503 for 8 s: breakers open, checkout says "try again"."""
    await chaos.sleep(2)
    await _misbehave(chaos, 8, down=True)


async def partner_flaky(chaos: Chaos) -> None:
    """Both partners fail 40 % of calls (500) for 12 s."""
    await chaos.sleep(1)
    await _misbehave(chaos, 12, errorRate=0.4)


# -- the pipeline -----------------------------------------------------------------------


async def _published_events(conn: asyncpg.Connection, orders: set[str]) -> list[Any]:
    return list(
        await conn.fetch(
            "SELECT * FROM platform.outbox WHERE published_at IS NOT NULL "
            "AND correlation_id = ANY($1::text[]) ORDER BY seq",
            list(orders),
        )
    )


def _job_arg(row: Any) -> dict[str, Any]:
    import json

    payload = row["payload"]
    return Event(
        id=row["id"],
        type=row["type"],
        aggregate_type=row["aggregate_type"],
        aggregate_id=row["aggregate_id"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        occurred_at=row["occurred_at"],
        payload=json.loads(payload) if isinstance(payload, str) else payload,
    ).to_job_arg()


async def poison_message(chaos: Chaos) -> None:
    """One job whose event cannot be read (a bug upstream, a hand-edited queue): it must be
    parked as a dead letter, not retried for hours nor dropped."""
    event_id = uuid.uuid4()
    jobs = await chaos.jobs()
    try:
        await jobs.enqueue_job(
            "payment.capture",
            {"id": str(event_id), "type": "OrderPlaced", "payload": "not an event"},
            _job_id=f"{event_id}:payment.capture",
            _queue_name="payment",
        )
    finally:
        await jobs.aclose()
    chaos.poison.add(str(event_id))


async def duplicate_jobs(chaos: Chaos) -> None:
    """Every published event's jobs enqueued again under another job id (twice): the
    duplicate a crashed relay or a retried enqueue would make. And one poison message."""
    await poison_message(chaos)
    done: set[uuid.UUID] = set()
    while not await chaos.sleep(0.7):
        # PostgreSQL or Redis may be down right now (combined run): try again next round
        with contextlib.suppress(Exception):
            conn = await chaos.db()
            try:
                rows = [
                    r for r in await _published_events(conn, chaos.orders) if r["id"] not in done
                ]
            finally:
                await conn.close()
            jobs = await chaos.jobs()
            try:
                for row in rows:
                    for subscriber in SUBSCRIPTIONS.get(row["type"], ()):
                        for copy in (1, 2):
                            await jobs.enqueue_job(
                                subscriber.task,
                                _job_arg(row),
                                _job_id=f"{row['id']}:{subscriber.task}:dup-{copy}",
                                _queue_name=subscriber.queue,
                            )
                    done.add(row["id"])
            finally:
                await jobs.aclose()
    chaos.notes.append(f"{len(done)} events' jobs enqueued twice more")


async def replayed_outbox(chaos: Chaos) -> None:
    """Published outbox rows marked unpublished again, every two seconds: the relay hands
    them out once more (a restored backup, a relay that crashed before its commit)."""
    replayed = 0
    while not await chaos.sleep(2):
        with contextlib.suppress(Exception):
            conn = await chaos.db()
            try:
                status = await conn.execute(
                    "UPDATE platform.outbox SET published_at = NULL "
                    "WHERE published_at IS NOT NULL AND correlation_id = ANY($1::text[])",
                    list(chaos.orders),
                )
                replayed += int(status.split()[-1])
            finally:
                await conn.close()
    chaos.notes.append(f"{replayed} outbox rows replayed")


async def double_submits(chaos: Chaos) -> None:
    """Nothing to break here: the workload double-clicks every form in this phase."""


async def combined(chaos: Chaos) -> None:
    """Everything at once, staggered over the run."""

    async def later(seconds: float, fault: Fault) -> None:
        if not await chaos.sleep(seconds):
            await fault(chaos)

    async def worker_kills() -> None:
        queues = ("payment", "delivery", "status", "coupon")
        await asyncio.gather(*(_kill_mid_job(chaos, queue, within=3) for queue in queues))

    async def relay_once() -> None:
        await asyncio.to_thread(chaos.shop.kill, "relay")
        await asyncio.sleep(1)
        await asyncio.to_thread(chaos.shop.spawn, "relay")

    async def hang_redis(seconds: float) -> None:
        await asyncio.to_thread(chaos.shop.redis.hang, seconds)
        chaos.notes.append(f"Redis hung for {seconds:.0f} s with PostgreSQL away")

    async def flaky_then_down() -> None:
        await _misbehave(chaos, 6, errorRate=0.3)
        await asyncio.sleep(2)
        await _misbehave(chaos, 5, latencyMs=2500)
        await asyncio.sleep(2)
        await _misbehave(chaos, 5, down=True)

    await asyncio.gather(
        two_relays(chaos),
        duplicate_jobs(chaos),
        replayed_outbox(chaos),
        later(1, lambda _: worker_kills()),
        later(2, lambda _: relay_once()),
        later(3, lambda _: flaky_then_down()),
        later(5, lambda _: asyncio.to_thread(chaos.shop.redis.restart_empty, 1.0)),
        later(12, lambda _: asyncio.to_thread(chaos.shop.postgres.outage, 10.0)),
        # and, while PostgreSQL is still away, Redis hangs too: no part may wait on either
        later(15, lambda _: hang_redis(5.0)),
    )
