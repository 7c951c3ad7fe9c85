"""The supervised worker's claim of a job (one script instead of arq's WATCH/MULTI): a job
runs on one worker at a time, never before it is due, and every slot comes back."""

from __future__ import annotations

import uuid

from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import get_kwargs

from app.platform.redis import create_job_pool
from app.platform.settings import get_settings
from workers import settings_for
from workers.supervised import SupervisedWorker


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
