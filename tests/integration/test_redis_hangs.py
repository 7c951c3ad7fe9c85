"""Redis hangs (a partition, a server stopped in its tracks): it neither answers nor
closes the connection. Every request that needs it must still end, with a 503 and
``Retry-After`` after ``REDIS_TIMEOUT_SECONDS``, not wait for ever; and the shop works
again once Redis does. The web app runs in the test process against a redis-server the
test owns (stopped with SIGSTOP), the shared PostgreSQL and the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import func, get_kwargs
from redis.asyncio import ConnectionPool

from app.platform.db import asyncpg_dsn
from app.platform.heartbeat import OK, REDIS_DOWN, Heartbeat
from app.platform.pubsub import RESYNC, Broadcaster
from app.platform.redis import RedisSilent, dumps_job, loads_job
from app.platform.relay import drain, run_relay
from app.platform.settings import Settings, get_settings
from app.subscriptions import SUBSCRIPTIONS
from tests.support.api import auth, browser_session, new_customer, order_body
from tests.support.inproc import events_of, place
from tests.support.pipeline import eventually
from tests.support.redis_server import RedisServer
from tests.support.webapp import client, running
from workers import settings_for, supervised
from workers.supervised import SupervisedWorker

#: far longer than the timeout under test: a request still waiting then waits for ever
HUNG = 30.0


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


def _settings(url: str) -> Settings:
    base = get_settings()
    redis = dataclasses.replace(
        base.redis,
        url=url,
        queue_url_setting="",
        pubsub_url_setting="",
        state_url_setting="",
        timeout_seconds=0.5,
    )
    return dataclasses.replace(base, redis=redis)


async def _answer(request: Any) -> httpx.Response:
    async with asyncio.timeout(HUNG):
        response: httpx.Response = await request
        return response


def _unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text[:500]
    assert int(response.headers["Retry-After"]) > 0


async def test_requests_that_need_a_hung_redis_end_in_503_and_work_once_it_answers(
    session_factory: Any, redis_server: RedisServer
) -> None:
    async with (
        running(_settings(redis_server.url)) as app,
        client(app) as api,
        client(app, peer="203.0.113.8") as browser,
    ):
        customer = await new_customer(api)
        await browser_session(browser, customer["email"])
        redis_server.pause()
        try:
            placed = await _answer(
                api.post("/api/orders", json=order_body(), headers=auth(customer))
            )
            _unavailable(placed)
            assert placed.json()["code"] == "unavailable"
            page = await _answer(browser.get("/orders"))  # the session lives in Redis
            _unavailable(page)
            styles = await _answer(browser.get("/static/css/app.css"))
            assert styles.status_code == 200, "a static file needs no session"
            _unavailable(await _answer(api.get("/health/ready")))
        finally:
            redis_server.resume()
        placed = await _answer(api.post("/api/orders", json=order_body(), headers=auth(customer)))
        assert placed.status_code == 201, placed.text
        assert (await _answer(browser.get("/orders"))).status_code == 200


async def test_the_live_update_listener_waits_through_quiet_spells_longer_than_the_timeout(
    session_factory: Any, redis_server: RedisServer
) -> None:
    settings = _settings(redis_server.url)
    async with running(settings) as app:
        await asyncio.sleep(settings.redis.timeout_seconds * 4)  # not one message meanwhile
        broadcaster = app.state.broadcaster
        assert (broadcaster.state, broadcaster.reconnects) == ("ok", 0)


async def test_the_live_update_listener_notices_a_hung_redis_and_resyncs_its_pages_after(
    session_factory: Any, redis_server: RedisServer
) -> None:
    """A hung Redis keeps the subscription's socket open and sends nothing: without a PING
    of its own the listener would wait for ever, every live page stale and ``/health`` ok."""
    settings = _settings(redis_server.url)
    async with running(settings) as app, client(app) as api:
        broadcaster: Broadcaster = app.state.broadcaster
        await eventually(_in_state(broadcaster, "ok"), "the listener subscribed", timeout=HUNG)
        async with broadcaster.listen("board") as board:
            redis_server.pause()
            try:
                await eventually(
                    _in_state(broadcaster, "reconnecting"), "the silence noticed", timeout=HUNG
                )
                assert broadcaster.reconnects == 1
                assert broadcaster.error is not None and "RedisSilent" in broadcaster.error
                health = (await _answer(api.get("/health"))).json()
                assert health["status"] == "degraded"
                assert health["web"]["pubsub"]["state"] == "reconnecting"
            finally:
                redis_server.resume()
            await eventually(_in_state(broadcaster, "ok"), "the listener back", timeout=HUNG)
            async with asyncio.timeout(HUNG):
                assert RESYNC in await board.take(), "the board re-reads what it missed"
        assert broadcaster.reconnects == 1


def _in_state(part: Broadcaster | Heartbeat | SupervisedWorker, state: str) -> Any:
    """A probe for ``eventually``: ``part`` (a worker: its heartbeat, once it beats) says
    ``state``."""

    async def probe() -> bool:
        owner = part.heartbeat if isinstance(part, SupervisedWorker) else part
        return owner is not None and owner.state == state

    return probe


#: the job ``_done`` runs: each try says it started (``_STARTED``), waits for the test's
#: go-ahead (``_GO``), then counts
_STARTED: asyncio.Event | None = None
_GO: asyncio.Event | None = None
_DONE_TRIES: list[str] = []


async def _done(ctx: dict[str, Any]) -> str:
    if _STARTED is not None and _GO is not None:
        _STARTED.set()
        await _GO.wait()
    _DONE_TRIES.append(ctx["job_id"])
    return "done"


async def test_a_worker_whose_redis_hangs_says_so_frees_its_slots_and_works_once_it_answers(
    session_factory: Any,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hung Redis answers no poll and no job's finish: bounded, the worker reports the
    outage (``/health``) instead of ``ok`` for ever, and gives the slot of a job it could
    not finish back (the job ends quietly, not as an error a later poll re-raises). Once
    Redis answers, the job is done: finished after all (Redis ran the finish it had
    received before it hung), or run again (its lease lapsed); and new jobs run."""
    global _STARTED, _GO
    monkeypatch.setattr(supervised, "RENEW_SECONDS", 0.5)
    worker = _worker_on(redis_server, poll_delay=0.2)
    queue, worker.lease_s = worker.queue_name, 2.0
    main = asyncio.create_task(worker.main())
    try:
        await eventually(_in_state(worker, OK), "the worker started", timeout=HUNG)
        # one job first: the finish script is loaded, as in a shop that has run a while
        await worker.pool.enqueue_job("t.done", _job_id="before", _queue_name=queue)
        await eventually(_tried(["before"]), "a job before the hang", timeout=HUNG)
        _STARTED, _GO = asyncio.Event(), asyncio.Event()
        await worker.pool.enqueue_job("t.done", _job_id="first", _queue_name=queue)
        async with asyncio.timeout(HUNG):
            await _STARTED.wait()
        redis_server.pause()
        try:
            await eventually(_in_state(worker, REDIS_DOWN), "the hang noticed", timeout=HUNG)
            assert worker.heartbeat is not None
            assert worker.heartbeat.detail["error"].startswith("RedisSilent")
            # renewals fail meanwhile, several (each waits RENEW_SECONDS, then gives up)
            await asyncio.sleep(supervised.RENEW_SECONDS * 5)
            said = [r for r in caplog.records if "leases not renewed" in r.getMessage()]
            assert len(said) == 1, "an outage is said once, not at every renewal"
            _GO.set()  # the job ends while Redis hangs: its finish gets no answer

            async def slot_back() -> bool:
                return worker.job_counter == 0

            await eventually(slot_back, "the unfinished job's slot back", timeout=HUNG)
            assert _DONE_TRIES == ["before", "first"]
            ended = worker.tasks["first"]  # no poll got through to clear it
            assert ended.done() and ended.exception() is None, "an error a poll re-raises"
        finally:
            redis_server.resume()
        await eventually(_in_state(worker, OK), "the worker back", timeout=HUNG)
        await worker.pool.enqueue_job("t.done", _job_id="second", _queue_name=queue)
        await eventually(_tried(["before", "first", "second"]), "a new job", timeout=HUNG)

        async def first_done() -> bool:
            return not await worker.pool.exists("arq:in-progress:first", "arq:job:first")

        await eventually(first_done, "the unfinished job finished or run again", timeout=HUNG)
        assert _DONE_TRIES.count("first") in (1, 2)
    finally:
        if _GO is not None:
            _GO.set()
        main.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await main
        await worker.close()
        _STARTED = _GO = None
        _DONE_TRIES.clear()


async def test_a_job_starting_while_redis_hangs_gives_its_slot_back(
    session_factory: Any, redis_server: RedisServer
) -> None:
    """A job claimed just before Redis hung reads its definition and counts its try in
    Redis before it runs: bounded, that start ends (quietly, the polls report the outage)
    rather than hold the slot until TCP gives up, many minutes later."""
    worker = _worker_on(redis_server)
    worker._pool = await create_pool(worker.redis_settings)
    try:
        redis_server.pause()
        try:
            async with asyncio.timeout(HUNG):
                await worker.run_job("claimed-before-the-hang", 0)
        finally:
            redis_server.resume()
        assert not worker._starting
        assert _DONE_TRIES == [], "the job ran without its definition"
    finally:
        await worker.pool.aclose()


def _worker_on(redis_server: RedisServer, **options: Any) -> SupervisedWorker:
    """A worker of a queue of its own on ``redis_server``, running ``_done`` and giving a
    silent Redis up after half a second."""
    worker = SupervisedWorker(
        **{
            **get_kwargs(settings_for("coupon")),
            "queue_name": f"hang-test-{uuid.uuid4().hex}",
            "redis_settings": RedisSettings.from_dsn(redis_server.url),
            "functions": [func(_done, name="t.done")],
            "handle_signals": False,
            **options,
        }
    )
    worker.redis_bound_s = 0.5
    return worker


def _tried(jobs: list[str]) -> Any:
    """Each of ``jobs`` done at least once (a job run again counts once)."""

    async def probe() -> bool:
        return sorted(set(_DONE_TRIES)) == sorted(jobs)

    return probe


async def test_the_relay_gives_a_hung_redis_up_and_its_events_wait_for_it(
    session_factory: Any, sandbox_url: str, redis_server: RedisServer
) -> None:
    """The relay enqueues inside the batch's transaction: unbounded, a hung Redis would
    hold that transaction, its rows' locks and an ``ok`` heartbeat for ever. Bounded, the
    batch rolls back as an outage and its events wait, unpublished, for Redis."""
    order_id = await place(session_factory)
    jobs = ArqRedis(
        ConnectionPool.from_url(redis_server.url),
        job_serializer=dumps_job,
        job_deserializer=loads_job,
    )
    try:
        await jobs.ping()  # connected before the hang: it answers nothing, refuses nothing
        redis_server.pause()
        try:
            with pytest.raises(RedisSilent):
                async with asyncio.timeout(HUNG):
                    await drain(session_factory, jobs, SUBSCRIPTIONS, redis_within=0.5)
        finally:
            redis_server.resume()
        [placed] = await events_of(session_factory, order_id, "OrderPlaced")
        assert placed.published_at is None, "nothing published while Redis hung"
        assert await drain(session_factory, jobs, SUBSCRIPTIONS, redis_within=0.5) >= 1
        [placed] = await events_of(session_factory, order_id, "OrderPlaced")
        assert placed.published_at is not None
    finally:
        await jobs.aclose()


async def test_an_idle_relay_notices_a_hung_redis_too(
    session_factory: Any, redis_server: RedisServer
) -> None:
    """With nothing to relay, the relay asks Redis nothing: its heartbeat said ``ok``
    through any outage. It pings Redis when a pass relayed nothing."""
    jobs = ArqRedis(ConnectionPool.from_url(redis_server.url))
    heartbeat = Heartbeat(session_factory, "relay", interval=60)
    stop = asyncio.Event()
    relay = asyncio.create_task(
        run_relay(
            session_factory,
            jobs,
            {},  # no subscriber: nothing is ever relayed
            asyncpg_dsn(get_settings().db.direct_url),
            stop,
            poll_seconds=0.2,
            heartbeat=heartbeat,
            redis_within=0.5,
        )
    )
    try:
        await eventually(_in_state(heartbeat, OK), "the relay relaying", timeout=HUNG)
        redis_server.pause()
        try:
            await eventually(_in_state(heartbeat, REDIS_DOWN), "the hang noticed", timeout=HUNG)
            assert heartbeat.detail["error"].startswith("RedisSilent: no answer within")
        finally:
            redis_server.resume()
        await eventually(_in_state(heartbeat, OK), "the relay back", timeout=HUNG)
        assert heartbeat.detail["error"] is None, "ok, with the outage's error still shown"
    finally:
        stop.set()
        async with asyncio.timeout(HUNG):
            await relay
        await jobs.aclose()
