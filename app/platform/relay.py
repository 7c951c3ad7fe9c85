"""The outbox relay: turns committed outbox rows into one arq job per subscriber.

Redis is only the delivery channel: ``published_at`` says a row was handed over once,
and the reconciler (``app.platform.reconciler``) hands it over again until every
subscriber has recorded it in its inbox.

It drains rows in commit order with ``FOR UPDATE SKIP LOCKED`` (so replicas never hand out
the same row twice at once), is woken by ``LISTEN outbox`` and polls slowly as a safety
net. When Redis is unreachable the transaction rolls back and the rows simply wait.
A job id of ``{event_id}:{task}`` makes a re-enqueue after a crash a no-op in arq, and
handlers are idempotent through the inbox for whatever slips past that.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import asyncpg
from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.exceptions import RedisError
from sqlalchemy import Table, bindparam, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform import metrics, priority
from app.platform.db import application_name, utcnow
from app.platform.events import Event
from app.platform.heartbeat import OK, REDIS_DOWN, Heartbeat
from app.platform.outbox import NOTIFY_CHANNEL, InboxRow, OutboxRow
from app.platform.redis import RedisSilent, answered_within

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subscriber:
    queue: str
    task: str


Subscriptions = Mapping[str, Sequence[Subscriber]]


def job_id(event_id: object, task: str) -> str:
    """One job id per (event, subscriber), whoever enqueues it (relay, reconciler, an
    admin's retry): arq refuses a second job with an id it still holds."""
    return f"{event_id}:{task}"


async def enqueue(jobs: ArqRedis, arg: dict[str, Any], sub: Subscriber) -> bool:
    """Hand one event to one subscriber; False when Redis already holds that job."""
    return await enqueue_many(jobs, [(arg, sub)]) == 1


def wake_key(queue: str) -> str:
    """A list a queue's workers block on (``BLPOP``) between polls: every job enqueued
    here pushes a token to it, so a worker starts it at once instead of at its next poll."""
    return f"{queue}:wake"


#: the most tokens a wake-up list keeps: enough to wake every replica of a queue, few
#: enough that a burst of jobs is not followed by a burst of empty polls
WAKE_TOKENS = 8

#: arq's ``enqueue_job`` for many jobs in one round trip, with the same rule: a job whose
#: key or kept result still exists is not enqueued again; and a token on the queue's
#: wake-up list per job enqueued (at most ``WAKE_TOKENS``). KEYS: job key, result key,
#: queue and wake-up list per job; ARGV: score, expiry (ms), most tokens, then job id and
#: serialized job per job.
ENQUEUE_MANY = """
local added = 0
for i = 0, #KEYS / 4 - 1 do
  if redis.call('exists', KEYS[4 * i + 1], KEYS[4 * i + 2]) == 0 then
    redis.call('psetex', KEYS[4 * i + 1], ARGV[2], ARGV[5 + 2 * i])
    redis.call('zadd', KEYS[4 * i + 3], ARGV[1], ARGV[4 + 2 * i])
    if redis.call('llen', KEYS[4 * i + 4]) < tonumber(ARGV[3]) then
      redis.call('rpush', KEYS[4 * i + 4], '1')
    end
    added = added + 1
  end
end
return added
"""


async def enqueue_many(jobs: ArqRedis, handed: Sequence[tuple[dict[str, Any], Subscriber]]) -> int:
    """Hand many (event, subscriber) jobs to arq in one atomic script: one round trip per
    relay batch instead of three per job, and the queues' workers woken. Returns how
    many were new."""
    if not handed:
        return 0
    now = timestamp_ms()
    keys: list[str] = []
    args: list[Any] = [now, jobs.expires_extra_ms, WAKE_TOKENS]
    for arg, sub in handed:
        jid = job_id(arg["id"], sub.task)
        keys += [job_key_prefix + jid, result_key_prefix + jid, sub.queue, wake_key(sub.queue)]
        job = serialize_job(sub.task, (arg,), {}, None, now, serializer=jobs.job_serializer)
        args += [jid, job]
    added = await jobs.eval(ENQUEUE_MANY, len(keys), *keys, *args)  # type: ignore[misc]
    return int(added)


#: rows per relay transaction
BATCH = 200
_OUTBOX = cast(Table, OutboxRow.__table__)
_INBOX = cast(Table, InboxRow.__table__)
_EVENT_FIELDS = tuple(Event.__struct_fields__)


@functools.cache
def _claim_rows(limit: int, routed: tuple[str, ...]) -> Any:
    """``UPDATE outbox SET published_at = :now … WHERE seq IN (the oldest unpublished,
    locked, skipping rows another relay holds) RETURNING …``: reading and marking the
    batch in one statement (it was a SELECT, then an ORM flush of one UPDATE per row),
    with the subscribers that handled each event in the transaction that recorded it
    (``app.platform.uow.Reaction``: their inbox rows) and those its process follows up
    (``app.platform.uow.FollowUp``)."""
    oldest = (
        select(_OUTBOX.c.seq)
        .where(_OUTBOX.c.published_at.is_(None))
        .order_by(_OUTBOX.c.seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    now = bindparam("now", type_=_OUTBOX.c.published_at.type)
    handled = (
        select(func.array_agg(_INBOX.c.handler))
        .where(_INBOX.c.event_id == _OUTBOX.c.id)
        .scalar_subquery()
        .label("handled")
    )
    return (
        update(_OUTBOX)
        .where(_OUTBOX.c.seq.in_(oldest.scalar_subquery()))
        .values(
            published_at=now,
            enqueued_at=now,
            finished_at=case((_OUTBOX.c.type.in_(routed), None), else_=now),
        )
        .returning(
            _OUTBOX.c.seq,
            *(_OUTBOX.c[name] for name in _EVENT_FIELDS),
            _OUTBOX.c.follow_ups,
            handled,
        )
    )


async def relay_batch(
    session_factory: async_sessionmaker[AsyncSession],
    jobs: ArqRedis,
    subscriptions: Subscriptions,
    *,
    limit: int = BATCH,
    follow_up_after: float | None = None,
    redis_within: float | None = None,
) -> int:
    """Publish up to ``limit`` unpublished events; return how many were published.

    One statement takes the oldest unpublished rows (``FOR UPDATE SKIP LOCKED``), marks
    them published (and finished, for an event nobody subscribes to) and returns them;
    the jobs go to Redis before the commit, so if Redis is away the rows wait.

    A follow-up the row names (``app.platform.uow.FollowUp``) is left to the process that
    recorded the event, for ``follow_up_after`` seconds after it happened; a row older than
    that (published again: a replay, a restored backup) gets its job like any other, as
    the reconciler would give it (a replay resets the time the reconciler counts from).

    ``redis_within``: the enqueue's bound (``answered_within``): a Redis that hangs must
    not hold the batch's transaction and row locks, and a heartbeat saying ``ok``, for
    ever."""
    routed = tuple(event_type for event_type, subscribers in subscriptions.items() if subscribers)
    async with session_factory() as session, session.begin():
        now = utcnow()
        rows = sorted(
            (await session.execute(_claim_rows(limit, routed), {"now": now})).all(),
            key=lambda row: row.seq,
        )
        handed: list[tuple[dict[str, Any], Subscriber]] = []
        for row in rows:
            arg = Event(**{name: getattr(row, name) for name in _EVENT_FIELDS}).to_job_arg()
            left = {*(row.handled or ()), *_being_followed_up(row, now, follow_up_after)}
            subscribers = [s for s in subscriptions.get(row.type, ()) if s.task not in left]
            handed += [(arg, sub) for sub in subscribers]
            log.info(
                "relayed %s to %d subscribers",
                row.type,
                len(subscribers),
                extra={"correlation_id": row.correlation_id, "event_id": str(row.id)},
            )
        async with answered_within(redis_within):
            await enqueue_many(jobs, handed)  # before commit: Redis down means rows wait
    metrics.OUTBOX_PUBLISHED.inc(len(rows))
    return len(rows)


def _being_followed_up(row: Any, now: datetime, follow_up_after: float | None) -> Sequence[str]:
    """The row's follow-ups its recording process may still be doing."""
    if follow_up_after is not None and row.occurred_at < now - timedelta(seconds=follow_up_after):
        return ()
    return row.follow_ups or ()


async def drain(
    session_factory: async_sessionmaker[AsyncSession],
    jobs: ArqRedis,
    subscriptions: Subscriptions,
    stop: asyncio.Event | None = None,
    *,
    follow_up_after: float | None = None,
    redis_within: float | None = None,
) -> int:
    """Publish batches until none is left, or until ``stop`` is set: a shutdown ends the
    relay between two batches, never inside one (a batch is one transaction)."""
    total = 0
    while not (stop and stop.is_set()):
        published = await relay_batch(
            session_factory,
            jobs,
            subscriptions,
            follow_up_after=follow_up_after,
            redis_within=redis_within,
        )
        total += published
        if published < BATCH:
            # nothing more to read now: what commits later sends its own NOTIFY, which
            # wakes ``run_relay`` again (no empty transaction to find that out per wake)
            break
    return total


async def run_relay(
    session_factory: async_sessionmaker[AsyncSession],
    jobs: ArqRedis,
    subscriptions: Subscriptions,
    dsn: str,
    stop: asyncio.Event,
    *,
    poll_seconds: float = 2.0,
    linger: float = 0.0,
    heartbeat: Heartbeat | None = None,
    follow_up_after: float | None = None,
    redis_within: float | None = None,
) -> None:
    """Relay until ``stop`` is set, surviving PostgreSQL and Redis outages.

    ``linger``: after a notification, wait this long before reading the outbox, so the
    transactions committing meanwhile share the batch. A batch's cost (a transaction, a
    Redis script) hardly depends on its size, and under load one notification came per
    committed transaction: about one event per batch. It adds ``linger`` to each hop."""
    wake = asyncio.Event()
    listener: asyncpg.Connection | None = None
    backoff = 0.2
    while not stop.is_set():
        try:
            if listener is None or listener.is_closed():
                listener = await asyncpg.connect(
                    dsn, server_settings={"application_name": f"{application_name()}-listener"}
                )
                priority.pass_on_to_backend(listener.get_server_pid())
                await listener.add_listener(NOTIFY_CHANNEL, lambda *_: wake.set())
            wake.clear()
            relayed = await drain(
                session_factory,
                jobs,
                subscriptions,
                stop,
                follow_up_after=follow_up_after,
                redis_within=redis_within,
            )
            if not relayed:  # nothing asked Redis anything: ask it, or "ok" says nothing
                async with answered_within(redis_within):
                    await jobs.ping()
            backoff = 0.2
            if heartbeat:
                heartbeat.set(OK, error=None)  # the last outage's error is history
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(wake, stop), timeout=poll_seconds)
            if linger > 0 and wake.is_set() and not stop.is_set():
                await asyncio.sleep(linger)
        except Exception as exc:
            log.warning("relay: %s: %s; retrying in %.1fs", type(exc).__name__, exc, backoff)
            if heartbeat:
                heartbeat.set(
                    REDIS_DOWN if _is_redis(exc) else "db_down",
                    error=f"{type(exc).__name__}: {exc}"[:200],
                )
            if listener is not None and not listener.is_closed():
                listener.terminate()
            listener = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, 5.0)
    if listener is not None and not listener.is_closed():
        await listener.close()


def _is_redis(exc: BaseException) -> bool:
    return isinstance(exc, RedisError | RedisSilent) or type(exc).__module__.startswith(
        ("redis", "arq")
    )


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
