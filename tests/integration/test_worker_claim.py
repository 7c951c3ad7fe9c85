"""The supervised worker's claim of a job (one script instead of arq's WATCH/MULTI): a job
runs on one worker at a time, never before it is due, and every slot comes back. And its
wake-up: a job the relay enqueues starts at once, one enqueued otherwise at the poll."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from arq import Retry
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.utils import timestamp_ms
from arq.worker import func, get_kwargs

from app.platform.redis import create_job_pool
from app.platform.relay import WAKE_TOKENS, Subscriber, enqueue_many, wake_key
from app.platform.settings import get_settings
from tests.support.pipeline import eventually
from workers import settings_for
from workers.supervised import LEASE_SECONDS, RENEW_SECONDS, SupervisedWorker


async def test_a_job_is_claimed_by_one_worker_only_when_due_and_not_held() -> None:
    queue, job_id = f"claim-test-{uuid.uuid4().hex}", uuid.uuid4().hex
    in_progress = in_progress_key_prefix + job_id
    pool = await create_job_pool(get_settings())
    workers = []
    for _ in range(2):
        worker = SupervisedWorker(**{**get_kwargs(settings_for("coupon")), "queue_name": queue})
        worker._pool = pool
        workers.append(worker)
    first, second = workers
    try:
        await pool.enqueue_job("no.such.task", _job_id=job_id, _queue_name=queue)

        await pool.set(in_progress, b"1")  # another worker runs it
        await first.start_jobs([job_id.encode()])
        assert job_id not in first.tasks and first.job_counter == 0
        await pool.delete(in_progress)

        await pool.zadd(queue, {job_id: timestamp_ms() + 60_000})  # retried later
        await first.start_jobs([job_id.encode()])
        assert job_id not in first.tasks and first.job_counter == 0

        await pool.zadd(queue, {job_id: timestamp_ms() - 1})  # due
        await first.start_jobs([job_id.encode()])
        assert job_id in first.tasks and first.job_counter == 1
        lease = await pool.pttl(in_progress)
        assert 0 < lease <= first.in_progress_timeout_s * 1000
        await second.start_jobs([job_id.encode()])
        assert job_id not in second.tasks and second.job_counter == 0, "claimed twice"

        await first.tasks[job_id]  # an unknown task: failed and taken off the queue
        assert first.job_counter == 0
        assert await pool.zscore(queue, job_id) is None
    finally:
        await pool.delete(queue, in_progress)
        await pool.aclose()


async def _taken_within(worker: SupervisedWorker, queue: str, seconds: float) -> None:
    """``worker`` takes the job off ``queue`` within ``seconds``, or the test fails."""

    async def taken() -> bool:
        return not await worker.pool.zcard(queue)

    await eventually(taken, f"the job taken off {queue}", timeout=seconds)


async def _running(poll_delay: float) -> tuple[SupervisedWorker, str, asyncio.Task[None]]:
    queue = f"wake-test-{uuid.uuid4().hex}"
    options = {**get_kwargs(settings_for("coupon")), "queue_name": queue, "poll_delay": poll_delay}
    worker = SupervisedWorker(**{**options, "handle_signals": False})
    main = asyncio.create_task(worker.main())

    async def started() -> bool:  # connected, first poll done, blocked on its wake-up list
        return worker._waker is not None

    await eventually(started, "the worker started", timeout=30)
    return worker, queue, main


async def _stop(worker: SupervisedWorker, queue: str, main: asyncio.Task[None]) -> None:
    main.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await main
    pool = worker.pool
    await pool.delete(queue, wake_key(queue))
    await worker.close()


async def test_a_job_the_relay_enqueues_wakes_the_worker_before_its_next_poll(
    session_factory: object,
) -> None:
    """The relay's script pushes a token to the queue's wake-up list; the worker blocked
    on it starts the job at once, not at its next poll (30 s away here)."""
    worker, queue, main = await _running(poll_delay=30)
    try:
        arg = {"id": str(uuid.uuid4()), "type": "T"}
        await enqueue_many(worker.pool, [(arg, Subscriber(queue, "no.such.task"))])
        await _taken_within(worker, queue, 5)  # woken by the token, not the poll
    finally:
        await _stop(worker, queue, main)


async def test_a_job_enqueued_without_a_token_is_still_found_by_the_poll(
    session_factory: object,
) -> None:
    """A job enqueued some other way (arq's ``enqueue_job``, a retry deferred to later, a
    Redis that restarted without its tokens) is found by the poll all the same."""
    worker, queue, main = await _running(poll_delay=0.5)
    try:
        await worker.pool.enqueue_job("no.such.task", _queue_name=queue)
        await _taken_within(worker, queue, 5)  # found by the poll
    finally:
        await _stop(worker, queue, main)


async def test_a_backlog_longer_than_a_poll_reads_is_worked_through_without_waiting(
    session_factory: object,
) -> None:
    """Ten pages of jobs enqueued at once bring a few wake-up tokens (``WAKE_TOKENS``),
    not one per job: the worker reads a page per poll and, having found a whole one,
    polls again at once instead of waiting for its next poll (30 s away here)."""
    worker, queue, main = await _running(poll_delay=30)
    try:
        jobs = [
            ({"id": str(uuid.uuid4()), "type": "T"}, Subscriber(queue, "no.such.task"))
            for _ in range(10 * worker.queue_read_limit)
        ]
        await enqueue_many(worker.pool, jobs)
        assert await worker.pool.llen(wake_key(queue)) <= WAKE_TOKENS
        await _taken_within(worker, queue, 20)
    finally:
        await _stop(worker, queue, main)


async def _done(ctx: dict[str, Any]) -> str:
    return "done"


async def _later(ctx: dict[str, Any]) -> str:
    raise Retry(defer=60)


async def test_a_finished_job_leaves_nothing_behind_and_a_retried_one_waits_its_turn(
    session_factory: object,
) -> None:
    """The worker's one-script finish does what arq's MULTI/EXEC did: a finished job's
    keys and queue entry go; a retried job stays queued, later, with its job key."""
    queue = f"finish-test-{uuid.uuid4().hex}"
    options = {
        **get_kwargs(settings_for("coupon")),
        "queue_name": queue,
        "functions": [func(_done, name="t.done"), func(_later, name="t.later")],
        "handle_signals": False,
    }
    worker = SupervisedWorker(**options)
    main = asyncio.create_task(worker.main())

    async def started() -> bool:
        return worker._waker is not None

    await eventually(started, "the worker started", timeout=30)
    pool = worker.pool
    try:
        await pool.enqueue_job("t.done", _job_id="done", _queue_name=queue)
        await pool.enqueue_job("t.later", _job_id="later", _queue_name=queue)

        async def settled() -> bool:
            return worker.jobs_complete == 1 and worker.jobs_retried == 1

        await eventually(settled, "one job done, one retried", timeout=30)
        for prefix in (job_key_prefix, in_progress_key_prefix, retry_key_prefix):
            assert not await pool.exists(prefix + "done"), f"{prefix}done left behind"
        assert await pool.zscore(queue, "done") is None
        score = await pool.zscore(queue, "later")
        assert score is not None and score > timestamp_ms() + 50_000, "retried a minute later"
        assert await pool.exists(job_key_prefix + "later"), "a retried job keeps its definition"
        assert not await pool.exists(in_progress_key_prefix + "later")
    finally:
        leftovers = [p + j for p in (job_key_prefix, retry_key_prefix) for j in ("done", "later")]
        await pool.delete(*leftovers)
        await _stop(worker, queue, main)


#: the job ids ``_hour`` was started with, once per start
HOUR_STARTS: list[str] = []


async def _hour(ctx: dict[str, Any]) -> str:
    HOUR_STARTS.append(ctx["job_id"])
    await asyncio.sleep(3600)
    return "late"


async def test_a_running_job_keeps_a_short_lease_and_a_dead_worker_s_job_is_free_soon(
    session_factory: object,
) -> None:
    """The in-progress lease is a few seconds, renewed while the job runs: held through
    many leases by a live worker (and taken back should it lapse), and free for another
    worker within one lease once its worker stops renewing (it died), not after the job's
    run-time limit (an hour here)."""
    queue, job_id = f"lease-test-{uuid.uuid4().hex}", uuid.uuid4().hex
    in_progress = in_progress_key_prefix + job_id
    options = {
        **get_kwargs(settings_for("coupon")),
        "queue_name": queue,
        "functions": [func(_hour, name="t.hour", timeout=3600)],
        "handle_signals": False,
    }
    worker, other = SupervisedWorker(**options), SupervisedWorker(**options)
    assert worker.lease_s == LEASE_SECONDS < worker.in_progress_timeout_s
    main = asyncio.create_task(worker.main())

    async def started() -> bool:
        return worker._renewing is not None

    await eventually(started, "the worker started", timeout=30)
    pool = worker.pool
    other._pool = pool
    loop = asyncio.get_running_loop()
    try:
        await pool.enqueue_job("t.hour", _job_id=job_id, _queue_name=queue)

        async def running() -> bool:
            return job_id in HOUR_STARTS

        await eventually(running, "the job running", timeout=30)
        held_until = loop.time() + 2 * worker.lease_s
        while loop.time() < held_until:
            lease = await pool.pttl(in_progress)
            assert 0 < lease <= worker.lease_s * 1000, f"the lease lapsed or is long: {lease}"
            await other.start_jobs([job_id.encode()])
            assert job_id not in other.tasks, "taken by another worker while it runs"
            assert HOUR_STARTS.count(job_id) == 1, "started again while it runs"
            await asyncio.sleep(0.5)

        # a Redis that stalled past the lease: it lapsed, and the worker (which polls
        # meanwhile) neither starts its own job again nor lets it go
        await pool.delete(in_progress)

        async def taken_back() -> bool:
            return bool(await pool.exists(in_progress))

        await eventually(taken_back, "the lapsed lease taken back", timeout=RENEW_SECONDS + 5)
        await other.start_jobs([job_id.encode()])
        assert job_id not in other.tasks, "taken by another worker after the lapse"
        assert HOUR_STARTS.count(job_id) == 1, "started again by its own worker"

        # what a SIGKILL does: no more polls, no more renewals, the job never finishes
        assert worker._renewing is not None
        for part in (main, worker._renewing):
            part.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await part
        died_at = loop.time()

        async def free() -> bool:
            return not await pool.exists(in_progress)

        await eventually(free, "the dead worker's lease lapsed", timeout=worker.lease_s + 5)
        assert loop.time() - died_at <= worker.lease_s + 2
        await other.start_jobs([job_id.encode()])
        assert job_id in other.tasks, "another worker takes the job"
    finally:
        for running_job in (*worker.tasks.values(), *other.tasks.values()):
            running_job.cancel()
        await asyncio.gather(*worker.tasks.values(), *other.tasks.values(), return_exceptions=True)
        await pool.delete(queue, in_progress, job_key_prefix + job_id, retry_key_prefix + job_id)
        await _stop(worker, queue, main)
