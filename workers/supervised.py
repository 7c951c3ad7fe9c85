"""An arq worker that outlives its Redis: ``pizzeria worker QUEUE`` runs one.

arq's own worker exits on the first connection error (a Redis restart, a reset) and
leaks a job slot when Redis fails while it claims a job. This one waits for Redis with
backoff at start, keeps polling through outages (reconnecting with backoff), never loses
a slot, and writes its state to PostgreSQL for ``/health`` every few seconds.

On SIGTERM it does what arq does with ``job_completion_wait``: takes no new job, lets the
running ones finish (up to ``SHUTDOWN_JOB_SECONDS``), then exits 0. A SIGTERM that came
while the process was still importing (``lifecycle.hold_stop_signals``) stops it before
it takes any job.

It does not poll Redis every ``WORKER_POLL_DELAY`` for work: it blocks on its queue's
wake-up list (``app.platform.relay.wake_key``), which every job the relay or the
reconciler enqueues pushes a token to, and polls when woken, when a job ends while it was
full, and at the latest every ``WORKER_POLL_DELAY`` (the safety net for retries deferred
to later, cron jobs and a Redis that restarted without the tokens).

A running job's in-progress lease is short (``LEASE_SECONDS``) and renewed while the job
runs, rather than arq's (the job timeout plus ten seconds): a job whose worker was killed
is picked up again within seconds, however long its run-time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq.connections import create_pool
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.utils import timestamp_ms, to_ms
from arq.worker import Worker, get_kwargs
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from app.platform import lifecycle
from app.platform.heartbeat import OK, REDIS_DOWN, Heartbeat
from app.platform.logs import OutageNotice
from app.platform.redis import answered_within, heard, redis_bound
from app.platform.relay import wake_key
from app.platform.settings import get_settings

log = logging.getLogger("pizzeria.worker")

#: a running job's in-progress lease, renewed every ``RENEW_SECONDS`` while it runs: a
#: killed worker's job is free for another this long after the worker's last renewal. A
#: worker (or a Redis) that stalls longer can see a job started again elsewhere, as it
#: could with arq's lease after the job's limit; every handler is idempotent and every
#: partner call carries its idempotency key.
LEASE_SECONDS = 10.0
RENEW_SECONDS = 2.0
#: renew the leases of the jobs this worker runs: lengthen one shorter than the lease
#: (never shorten one arq keeps longer, a cron job's lock), and take back one that lapsed
#: (a Redis stalled past it) while the job is still queued and due (not finished, not
#: retried later). Works on any Redis (``PEXPIRE ... GT`` needs 7).
#: KEYS: queue, in-progress keys...; ARGV: lease (ms), now (ms), job ids...
RENEW = """
local lease = tonumber(ARGV[1])
for i = 2, #KEYS do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl == -2 then
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i + 1])
    if score and tonumber(score) <= tonumber(ARGV[2]) then
      redis.call('PSETEX', KEYS[i], lease, '1')
    end
  elseif ttl >= 0 and ttl < lease then
    redis.call('PEXPIRE', KEYS[i], lease)
  end
end
return 1
"""
#: without renewals, as arq: the lease outlives the longest job by this much
LEASE_MARGIN_SECONDS = 2.0
BACKOFF_START, BACKOFF_MAX = 0.2, 5.0
#: how long one BLPOP on the wake-up list blocks (a stopping worker waits no longer)
WAKE_BLOCK_SECONDS = 5
OUTAGE = (RedisError, OSError, asyncio.TimeoutError)
#: claim a job for this worker, as arq's WATCH/MULTI does: not when another worker holds
#: it (in-progress key), not when it is gone from the queue or deferred to later; else
#: take its in-progress lease and answer its score.
#: KEYS: in-progress key, queue; ARGV: job id, now (ms), lease (ms)
CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
return score
"""


#: arq's ``finish_job`` (MULTI, ZREM, ZREM, DEL, EXEC: five commands per job) as one
#: script, atomic the same way: the job's keys go (or its in-progress lease is kept, for
#: cron), it leaves the queue when finished, or its score moves on for a retry.
#: KEYS: in-progress, retry, job, abort set, queue, result; ARGV: job id, finished (1/0),
#: score increment, in-progress ms to keep, result, result ms ('' for none of these)
FINISH = """
local delete = {}
if ARGV[4] == '' then
  delete[#delete + 1] = KEYS[1]
else
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
if ARGV[2] == '1' then
  if ARGV[5] ~= '' then
    if ARGV[6] == '' then
      redis.call('SET', KEYS[6], ARGV[5])
    else
      redis.call('SET', KEYS[6], ARGV[5], 'PX', ARGV[6])
    end
  end
  delete[#delete + 1] = KEYS[2]
  delete[#delete + 1] = KEYS[3]
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('ZREM', KEYS[5], ARGV[1])
elseif ARGV[3] ~= '' then
  redis.call('ZINCRBY', KEYS[5], ARGV[3], ARGV[1])
end
if #delete > 0 then
  redis.call('DEL', unpack(delete))
end
return 1
"""


class SupervisedWorker(Worker):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        longest = max(f.timeout_s or self.job_timeout_s or 0 for f in self.functions.values())
        self.in_progress_timeout_s = longest + LEASE_MARGIN_SECONDS
        self.lease_s = min(LEASE_SECONDS, self.in_progress_timeout_s)
        #: how long a poll or a finish waits for an answer from Redis
        self.redis_bound_s = redis_bound(get_settings())
        self._poll_silence: asyncio.Timeout | None = None
        #: the bound on each job's start in Redis (``run_job``), lifted once it runs
        self._starting: dict[str, asyncio.Timeout | None] = {}
        self._then_on_job_start = self.on_job_start
        self.on_job_start = self._job_starts
        self._renewing: asyncio.Task[None] | None = None
        self.heartbeat: Heartbeat | None = None
        self._beating: asyncio.Task[None] | None = None
        self._backoff = BACKOFF_START
        self.reconnects = 0
        self._started_up = False
        self._claim_script: AsyncScript | None = None
        self._finish_script: AsyncScript | None = None
        #: set when there may be work: a token on the wake-up list, a slot freed while full
        self._wake = asyncio.Event()
        self._waker: asyncio.Task[None] | None = None
        self._full = False
        #: the last poll read a whole page of due jobs and started some: more may be due
        self._more = False

    async def main(self) -> None:
        """Start up (database, partner clients, heartbeat) before Redis is even there,
        then connect with backoff and poll for ever."""
        early = lifecycle.early_stop()
        if early is not None:  # signalled while importing: start nothing, take no job
            log.warning("worker %s: %s before start-up, stopping", self.queue_name, early.name)
            return
        if self.on_startup:
            await self.on_startup(self.ctx)
        self._started_up = True
        settings = get_settings()
        self.heartbeat = Heartbeat(
            self.ctx["session_factory"],
            f"worker:{self.queue_name}",
            settings.pipeline.heartbeat_seconds,
        )
        self._beating = asyncio.create_task(self.heartbeat.run())
        while self._pool is None:
            try:
                self._pool = await create_pool(
                    self.redis_settings,
                    job_deserializer=self.job_deserializer,
                    job_serializer=self.job_serializer,
                    default_queue_name=self.queue_name,
                    expires_extra_ms=self.expires_extra_ms,
                )
            except OUTAGE as exc:
                await self._outage(exc)
        log.info("worker %s started: %s", self.queue_name, ", ".join(self.functions))
        self._report_ok()
        self._waker = asyncio.create_task(self._wait_for_tokens())
        self._renewing = asyncio.create_task(self._renew_leases())
        while True:
            self._wake.clear()
            self._more = False
            await self._poll_iteration()
            if self._more:
                continue
            self._full = self.job_counter >= self.max_jobs
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_delay_s)

    async def _wait_for_tokens(self) -> None:
        """Block on the queue's wake-up list and wake the poll loop for every token;
        through a Redis outage, retry with backoff (the loop polls on its own meanwhile)."""
        key, backoff = wake_key(self.queue_name), BACKOFF_START
        while True:
            try:
                # bounded here too: a connection Redis never answers is dropped, not awaited
                token = await asyncio.wait_for(
                    self.pool.blpop([key], timeout=WAKE_BLOCK_SECONDS),  # type: ignore[arg-type]
                    WAKE_BLOCK_SECONDS + 5,
                )
                if token:
                    self._wake.set()
                backoff = BACKOFF_START
            except Exception as exc:  # an outage above all: never let the waker die
                log.debug("worker %s: wake-up list: %s", self.queue_name, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _renew_leases(self) -> None:
        """Every ``RENEW_SECONDS``, renew the lease of each job still running (``RENEW``,
        one round trip). A round that fails or hangs is given up at the next one's time:
        the lease outlives four of them."""
        script = self.pool.register_script(RENEW)
        lease_ms = int(self.lease_s * 1000)
        notice = OutageNotice(  # said once per outage, not every round (every 2 s)
            log,
            f"worker {self.queue_name}: leases not renewed",
            f"worker {self.queue_name}: leases renewed again",
        )
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            running = [job_id for job_id, task in self.tasks.items() if not task.done()]
            if not running:
                notice.forget()  # nothing to renew: the next outage is said again
                continue
            keys = [self.queue_name, *(in_progress_key_prefix + job_id for job_id in running)]
            try:
                async with answered_within(RENEW_SECONDS):
                    await script(keys=keys, args=[lease_ms, timestamp_ms(), *running])
            except Exception as exc:  # an outage above all: never let the renewer die
                notice.failed(exc)
            else:
                notice.worked()

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        if self._full:  # the last poll left jobs queued for want of a slot: one is free now
            self._wake.set()

    async def _poll_iteration(self) -> None:
        try:
            # a hung Redis: not a poll waiting for ever, the worker taking no job and its
            # heartbeat still saying ok, but an outage reported within seconds
            async with answered_within(self.redis_bound_s) as self._poll_silence:
                await super()._poll_iteration()
        except OUTAGE as exc:
            await self._outage(exc)
        else:
            self._report_ok()
        finally:
            self._poll_silence = None

    async def run_job(self, job_id: str, score: int) -> None:
        """arq's, with its start in Redis bounded (the job's definition read and its try
        counted: a Redis that hangs would hold the slot for ever), and a job whose
        bookkeeping in Redis failed (that start, or its finish) ending quietly: raised, it
        would be re-raised by a later poll, after Redis came back, as an outage of its own,
        and by none at all once the job was claimed again. The polls meanwhile report the
        outage; the job runs again when its lease lapses, unless its finish reached Redis
        after all."""
        try:
            async with answered_within(self.redis_bound_s) as self._starting[job_id]:
                await super().run_job(job_id, score)
        except OUTAGE as exc:
            log.warning(
                "worker %s: job %s not started or not finished in Redis (%s: %s); it runs "
                "again unless the finish reached Redis",
                self.queue_name,
                job_id,
                type(exc).__name__,
                exc,
            )
        finally:
            self._starting.pop(job_id, None)

    async def _job_starts(self, ctx: dict[str, Any]) -> None:
        """arq's ``on_job_start``, right before the job's function: from here its own time
        limit bounds it, and its finish is bounded on its own (``_finish``)."""
        starting = self._starting.pop(ctx["job_id"], None)
        if starting is not None:
            starting.reschedule(None)
        if self._then_on_job_start is not None:
            await self._then_on_job_start(ctx)

    async def _outage(self, exc: BaseException) -> None:
        if self.heartbeat and self.heartbeat.state != REDIS_DOWN:
            log.warning(
                "worker %s lost Redis (%s: %s); reconnecting",
                self.queue_name,
                type(exc).__name__,
                exc,
            )
            self.reconnects += 1
        if self.heartbeat:
            self.heartbeat.set(REDIS_DOWN, error=f"{type(exc).__name__}: {exc}"[:200])
        await asyncio.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _report_ok(self) -> None:
        self._backoff = BACKOFF_START
        if self.heartbeat is None:
            return
        if self.heartbeat.state == REDIS_DOWN:
            log.info("worker %s reconnected to Redis", self.queue_name)
        self.heartbeat.set(
            OK,
            error=None,
            reconnects=self.reconnects,
            jobs_complete=self.jobs_complete,
            jobs_retried=self.jobs_retried,
            jobs_failed=self.jobs_failed,
            jobs_running=len(self.tasks),
        )

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's ``start_jobs``, except that a Redis error while claiming a job gives its
        slot back (arq's leaks it, and after a few outages the worker runs nothing).

        A whole page read (``queue_read_limit``) of which some started means the queue may
        hold more due jobs than one poll reads: the worker polls again at once
        (``_more``). A backlog enqueued while the worker was away, or faster than it
        runs, brings a few wake-up tokens, not one per job (``relay.WAKE_TOKENS``), and
        a job finishing wakes the worker only when it is full; without this, after each
        page it sat idle until ``WORKER_POLL_DELAY`` with work waiting (while a backlog
        drained, its jobs in progress fell from about 16 to none for half a second every
        few seconds). A page of which none started (all held by other replicas) waits
        as before."""
        started_any = False
        for job_id_b in job_ids:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return None
            self.job_counter = self.job_counter + 1
            job_id = job_id_b.decode()
            started = False
            try:
                started = await self._claim(job_id)
            finally:
                if not started:
                    self.job_counter = self.job_counter - 1
                    self.sem.release()
            started_any = started_any or started
        self._more = started_any and len(job_ids) >= self.queue_read_limit

    async def _claim(self, job_id: str) -> bool:
        """arq's claim (WATCH the in-progress key, EXISTS, ZSCORE, MULTI, PSETEX, EXEC:
        four round trips and six commands per job) as one script: atomic the same way,
        one round trip."""
        running = self.tasks.get(job_id)
        if running is not None and not running.done():
            return False  # its lease lapsed while it runs here: not a second copy (RENEW)
        if self._claim_script is None:
            # EVALSHA; a restarted Redis that forgot the script gets it loaded again
            self._claim_script = self.pool.register_script(CLAIM)
        score = await self._claim_script(
            keys=[in_progress_key_prefix + job_id, self.queue_name],
            args=[job_id, timestamp_ms(), int(self.lease_s * 1000)],
        )
        heard(self._poll_silence, self.redis_bound_s)  # a long poll is no silent Redis
        if score is None:
            return False
        task = self.loop.create_task(self.run_job(job_id, int(float(score))))
        task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
        self.tasks[job_id] = task
        return True

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        """arq's ``finish_job`` in one command (``FINISH``) instead of five."""
        result_ms = None if keep_result_forever else to_ms(result_timeout_s)
        await self._finish(
            job_id, finish, incr_score, to_ms(keep_in_progress), result_data, result_ms
        )

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        """arq's ``finish_failed_job`` (the job is gone for good) through ``FINISH`` too."""
        keep = self.keep_result_forever or self.keep_result_s > 0
        result_ms = None if self.keep_result_forever else to_ms(self.keep_result_s)
        await self._finish(job_id, True, None, None, result_data if keep else None, result_ms)

    async def _finish(
        self,
        job_id: str,
        finish: bool,
        incr_score: int | None,
        keep_in_progress_ms: int | None,
        result_data: bytes | None,
        result_ms: int | None,
    ) -> None:
        if self._finish_script is None:
            self._finish_script = self.pool.register_script(FINISH)
        keys = [
            in_progress_key_prefix + job_id,
            retry_key_prefix + job_id,
            job_key_prefix + job_id,
            abort_jobs_ss,
            self.queue_name,
            result_key_prefix + job_id,
        ]
        args: list[bytes | str | int] = [
            job_id,
            int(finish),
            incr_score or "",
            keep_in_progress_ms or "",
            result_data or "",
            result_ms or "",
        ]
        # a finish that gets no answer ends the job's task (``run_job``): its slot comes
        # back, and its lease, no longer renewed, lets it run again
        async with answered_within(self.redis_bound_s):
            await self._finish_script(keys=keys, args=args)

    async def close(self) -> None:
        # the jobs still ending (cancelled after the shutdown wait) keep their leases
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for task in (self._waker, self._renewing, self._beating):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.heartbeat:
            await self.heartbeat.remove()
        if self._pool is None:
            if self.on_shutdown and self._started_up:
                await self.on_shutdown(self.ctx)
            return
        with contextlib.suppress(*OUTAGE):
            async with answered_within(self.redis_bound_s):  # a SIGTERM in a partition
                await super().close()


def run(settings_cls: type) -> None:
    """Run the worker for ``settings_cls`` (a ``workers.<queue>.WorkerSettings``)."""
    SupervisedWorker(**get_kwargs(settings_cls)).run()
