"""Prometheus metrics: the families every part exports, and the shop-wide gauges.

Each process counts what it does (orders placed by the web, jobs run by a worker, partner
calls wherever they happen) in prometheus-client's default registry. The web serves it at
``/metrics`` (plus Litestar's HTTP request metrics, by route template); the relay and each
worker serve theirs on a small port of their own (``--metrics-port`` / ``METRICS_PORT``),
so every pod can be scraped.

The shop-wide gauges (breakers, queue depths, consumers, outbox backlog and age, dead
letters, stuck orders) describe shared state, not one process: the web computes them when
``/metrics`` is scraped, with a handful of cheap queries (an indexed count, ``ZCARD``,
``EXISTS``), so one scrape shows the shop's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from arq import Retry
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer
from redis.asyncio import Redis
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.platform.outbox import IN_TRANSACTION

log = logging.getLogger(__name__)

# -- what happens (counted by the process that does it) ---------------------------------

ORDERS_PLACED = Counter("pizzeria_orders_placed", "Orders committed (not replays of a key)")
ORDERS_PAID = Counter("pizzeria_orders_paid", "Orders whose payment was captured")
PAYMENTS_FAILED = Counter("pizzeria_payments_failed", "Charges the provider declined")
PARTNER_CALL_SECONDS = Histogram(
    "pizzeria_partner_call_seconds",
    "Duration of calls to a partner (payment provider, delivery partner)",
    ["partner", "operation"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
)
JOBS = Counter(
    "pizzeria_jobs",
    "Job runs by task and outcome (ok, retry, dead_letter, error, cancelled)",
    ["task", "outcome"],
)
FOLLOW_UPS = Counter(
    "pizzeria_follow_ups",
    "Jobs run by the process that recorded their event, by task and outcome (done, "
    "handed_over to their queue, left to the reconciler; enqueued: a job with no work "
    "for that process, handed over right after the commit)",
    ["task", "outcome"],
)
SSE_CONNECTIONS = Gauge("pizzeria_sse_connections", "Open server-sent event streams")
OUTBOX_PUBLISHED = Counter("pizzeria_outbox_published", "Outbox events handed to the queues")
EVENTS = Counter("pizzeria_events", "Domain events committed, by type", ["type"])
#: business counters are counted from the events a transaction committed, so an order
#: counts once, whichever process and however many job retries it took
EVENT_COUNTERS = {
    "OrderPlaced": ORDERS_PLACED,
    "OrderPaid": ORDERS_PAID,
    "PaymentFailed": PAYMENTS_FAILED,
}

# -- the shop's state (computed at scrape time by the web) ------------------------------

BREAKER_STATE = Gauge(
    "pizzeria_breaker_state", "Partner circuit breaker: 0 closed, 1 half-open, 2 open", ["partner"]
)
QUEUE_DEPTH = Gauge("pizzeria_queue_depth", "Jobs waiting in an arq queue", ["queue"])
QUEUE_CONSUMERS = Gauge(
    "pizzeria_queue_consumers",
    "1 while at least one worker of the queue checked in within its health-check interval",
    ["queue"],
)
OUTBOX_BACKLOG = Gauge("pizzeria_outbox_backlog", "Outbox events not yet handed to the queues")
OUTBOX_OLDEST_AGE = Gauge(
    "pizzeria_outbox_oldest_age_seconds", "Age of the oldest event not yet handed to the queues"
)
DEAD_LETTERS = Gauge("pizzeria_dead_letters", "Events parked after a permanent failure")
STUCK_ORDERS = Gauge("pizzeria_stuck_orders", "Orders that stopped moving")
SOURCE_UP = Gauge(
    "pizzeria_metrics_source_up",
    "1 if the scrape could read this source (postgres, redis)",
    ["source"],
)

BREAKER_LEVEL = {"closed": 0, "half_open": 1, "open": 2}
#: arq's key for a queue's health check (``<queue>:health-check``), refreshed by a worker
#: every ``health_check_interval`` and expiring one second later
HEALTH_CHECK_SUFFIX = ":health-check"


# -- hooks ------------------------------------------------------------------------------


@event.listens_for(Session, "after_commit")
def _count_committed_events(session: Session) -> None:
    """Count the events this commit made durable, once each (the outbox lists what the
    transaction recorded; the unit of work takes its own copy before committing)."""
    for committed in session.info.pop(IN_TRANSACTION, []):
        EVENTS.labels(committed.type).inc()
        counter = EVENT_COUNTERS.get(committed.type)
        if counter is not None:
            counter.inc()


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back_events(session: Session, previous_transaction: Any) -> None:
    """Events recorded in a transaction that rolled back never happened."""
    session.info.pop(IN_TRANSACTION, None)


Job = Callable[..., Coroutine[Any, Any, Any]]
#: what ``app.platform.handlers.run_job`` returns for a job it parked
DEAD_LETTERED = "dead-lettered"


def counted_job(name: str, task: Job) -> Job:
    """Count every run of a job by outcome: ``ok``, ``retry`` (it runs again later),
    ``dead_letter`` (parked after a permanent failure), ``error`` (it raised),
    ``cancelled`` (timeout or shutdown)."""

    @functools.wraps(task)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        outcome = "error"
        try:
            result = await task(ctx, *args, **kwargs)
            outcome = "dead_letter" if result == DEAD_LETTERED else "ok"
            return result
        except Retry:
            outcome = "retry"
            raise
        except BaseException as exc:
            outcome = "cancelled" if not isinstance(exc, Exception) else "error"
            raise
        finally:
            JOBS.labels(name, outcome).inc()

    return run


@contextlib.contextmanager
def timed_partner_call(partner: str, operation: str) -> Iterator[None]:
    """``with timed_partner_call("payment", "charge"): ...`` observes the call's duration
    (whatever its outcome: a timeout is the slowest call of all)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        PARTNER_CALL_SECONDS.labels(partner, operation).observe(time.perf_counter() - started)


def serve_metrics(port: int, token: str = "", host: str = "0.0.0.0") -> None:
    """Serve this process's registry on ``port`` from a background thread (0: don't),
    behind the same bearer token as the web's ``/metrics``."""
    if not port:
        return
    exporter = make_wsgi_app(REGISTRY)

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not authorized(environ.get("HTTP_AUTHORIZATION"), token):
            start_response(
                "401 Unauthorized",
                [("WWW-Authenticate", 'Bearer realm="metrics"'), ("Content-Type", "text/plain")],
            )
            return [b"metrics need the scraper's bearer token\n"]
        return exporter(environ, start_response)

    server = make_server(host, port, guarded, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on :%s/metrics", port)


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


# -- the shop-wide gauges ----------------------------------------------------------------

StateReader = Callable[[], Coroutine[Any, Any, Sequence[tuple[str, str]]]]
Count = Callable[[AsyncSession], Coroutine[Any, Any, float]]


#: how long a scrape waits for one source: well inside Prometheus' 10 s scrape timeout, so
#: a PostgreSQL or Redis that hangs shows as ``pizzeria_metrics_source_up 0`` (and its
#: alert fires) instead of a scrape that times out and records nothing
SOURCE_SECONDS = 3.0
#: reads that outlived their scrape, kept until they end (the driver's own timeout)
_LATE: set[asyncio.Future[Any]] = set()


async def refresh_shop_gauges(
    session_factory: async_sessionmaker[AsyncSession],
    redis: Redis,
    queues: Sequence[str],
    breaker_states: StateReader,
    dead_letters: Count,
    stuck_orders: Count,
    within: float = SOURCE_SECONDS,
) -> None:
    """Read the shop's state into the gauges; a source that cannot be read within
    ``within`` seconds is reported by ``pizzeria_metrics_source_up`` and leaves its gauges
    as they were."""

    async def read_redis() -> None:
        for partner, state in await breaker_states():
            BREAKER_STATE.labels(partner).set(BREAKER_LEVEL.get(state, 2))
        async with redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.zcard(queue)
                pipe.exists(queue + HEALTH_CHECK_SUFFIX)
            answers = await pipe.execute()
        for i, queue in enumerate(queues):
            QUEUE_DEPTH.labels(queue).set(answers[2 * i])
            QUEUE_CONSUMERS.labels(queue).set(1 if answers[2 * i + 1] else 0)

    async def read_postgres() -> None:
        async with session_factory() as session:
            backlog, oldest = (
                await session.execute(
                    text(
                        "SELECT count(*), coalesce(extract(epoch FROM now() - min(occurred_at)), 0)"
                        " FROM platform.outbox WHERE published_at IS NULL"
                    )
                )
            ).one()
            OUTBOX_BACKLOG.set(backlog)
            OUTBOX_OLDEST_AGE.set(float(oldest))
            DEAD_LETTERS.set(await dead_letters(session))
            STUCK_ORDERS.set(await stuck_orders(session))

    for source, read in (("redis", read_redis), ("postgres", read_postgres)):
        SOURCE_UP.labels(source).set(1 if await _read_within(source, read(), within) else 0)


async def _read_within(source: str, read: Coroutine[Any, Any, None], seconds: float) -> bool:
    """Whether ``read`` finished, without error, within ``seconds``. One that has not is
    left to end on its own (cancelling it would wait on the very server that hangs)."""
    task = asyncio.ensure_future(read)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        log.warning("metrics: %s did not answer within %.0f s", source, seconds)
        _LATE.add(task)
        task.add_done_callback(_LATE.discard)
        task.add_done_callback(_quietly)
        return False
    if (error := task.exception()) is not None:
        log.warning("metrics: cannot read %s: %r", source, error)
        return False
    return True


def _quietly(task: asyncio.Future[Any]) -> None:
    """A late read's error is not news: the scrape that waited for it said so."""
    if not task.cancelled():
        task.exception()


def authorized(authorization: str | None, token: str) -> bool:
    """No token configured: open. Otherwise ``Authorization: Bearer <token>`` exactly."""
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


def exposition() -> tuple[bytes, str]:
    """This process's registry in Prometheus' text format, with its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
