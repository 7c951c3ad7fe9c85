"""What every arq worker shares: settings, database, Redis and partner clients in ``ctx``."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

from arq.worker import Function, func

from app.platform import liveness, logs, metrics
from app.platform.db import create_engine, create_session_factory
from app.platform.handlers import run_job
from app.platform.loop import freeze_startup_heap
from app.platform.pubsub import publisher
from app.platform.redis import (
    arq_redis_settings,
    create_redis,
    create_state_redis,
    dumps_job,
    loads_job,
)
from app.platform.settings import Settings, get_settings
from app.platform.uow import react_in_transaction, read_your_writes
from app.platform.worker import WorkerContext
from app.status.service import project_in_transaction
from app.subscriptions import REACTIONS, SUBSCRIPTIONS
from workers.context import worker_context

Task = Callable[..., Coroutine[Any, Any, Any]]
log = logging.getLogger("pizzeria.worker")


async def startup(ctx: dict[str, Any]) -> None:
    """Fill arq's ``ctx`` with what every job gets (``workers.context.worker_context``),
    plus what only start-up and shutdown use: the engine and the liveness probe."""
    settings = get_settings()
    engine = create_engine(settings, pool_size=settings.worker.db_pool)
    ctx["engine"] = engine
    ctx.update(
        worker_context(
            settings,
            create_session_factory(engine),
            # pub/sub (live updates) and the partner breakers; a job stuck on a Redis that
            # hangs is ended by its job timeout, so no timer per command
            redis=create_redis(settings, bounded=False),
            state_redis=create_state_redis(settings, bounded=False),
        )
    )
    # a handler's events are folded into the read models in its own transaction, and the
    # live pages told after it: no status job (and its hop) for the events it records
    read_your_writes(ctx["session_factory"], project_in_transaction, publisher(ctx["redis"]))
    # and another context's database-only reaction runs in it too (``app.subscriptions``)
    react_in_transaction(ctx["session_factory"], REACTIONS, SUBSCRIPTIONS)
    ctx["liveness"] = liveness.start(settings.lifecycle.liveness_file)  # the pod's probe
    freeze_startup_heap()


async def shutdown(ctx: dict[str, Any]) -> None:
    await liveness.stop(ctx.get("liveness"))
    await ctx["redis"].aclose()
    await ctx["state_redis"].aclose()
    await ctx["engine"].dispose()


def partner_job_timeout(settings: Settings) -> float:
    """Run-time limit of a job that calls a partner: up to two partner calls (a request and
    its withdrawal) plus the database work around them. (A killed worker's job no longer
    waits this long: its lease is renewed while it runs, see ``workers.supervised``.)"""
    return 2 * settings.partners.timeout_seconds + settings.pipeline.job_timeout_seconds / 2


def _job(queue: str, name: str, task: Task, timeout: float) -> Task:
    """Every task runs through ``run_job``: timeout, retry or dead letter, inbox record."""

    @functools.wraps(task)
    async def run(ctx: dict[str, Any], raw: dict[str, Any]) -> Any:
        job = cast(WorkerContext, ctx)  # filled by ``startup`` (workers.context)
        return await run_job(job, handler=name, queue=queue, task=task, raw=raw, timeout=timeout)

    return run


def observed(name: str, task: Task) -> Task:
    """Logs and metrics around a job (``app.platform.logs``, ``app.platform.metrics``): its
    log lines carry the order and event ids, and every run is counted by outcome."""
    return logs.job_context(name, metrics.counted_job(name, task))


def worker_settings(
    queue: str,
    tasks: Sequence[tuple[str, Task]],
    *,
    timeout: float | None = None,
    on_startup: Callable[[dict[str, Any]], Coroutine[Any, Any, None]] | None = None,
    on_shutdown: Callable[[dict[str, Any]], Coroutine[Any, Any, None]] | None = None,
) -> type:
    """An arq ``WorkerSettings`` class for ``queue`` (so ``arq workers.<queue>.WorkerSettings``
    works too); see ``workers/<queue>.py``. ``timeout`` is each job's run-time limit
    (``WORKER_JOB_TIMEOUT`` unless the queue calls partners: ``partner_job_timeout``)."""
    settings = get_settings()

    async def _startup(ctx: dict[str, Any]) -> None:
        await startup(ctx)
        if on_startup:
            await on_startup(ctx)

    async def _shutdown(ctx: dict[str, Any]) -> None:
        if on_shutdown:
            await on_shutdown(ctx)
        await shutdown(ctx)

    limit = timeout or settings.pipeline.job_timeout_seconds
    functions: list[Function] = [
        # arq's own limit is a backstop a little above ours (ours retries, arq's drops)
        func(observed(name, _job(queue, name, task, limit)), name=name, timeout=limit + 1)
        for name, task in tasks
    ]
    options: dict[str, Any] = {
        "queue_name": queue,
        "functions": functions,
        "on_startup": _startup,
        "on_shutdown": _shutdown,
        "redis_settings": arq_redis_settings(settings),
        "job_serializer": dumps_job,
        "job_deserializer": loads_job,
        "poll_delay": settings.worker.poll_delay,
        "max_jobs": settings.worker.max_jobs,
        "job_timeout": limit + 1,
        "max_tries": settings.worker.max_tries,
        # no results kept: PostgreSQL's inbox says what is done, and a kept result would
        # stop the reconciler from enqueuing a lost job again under the same id
        "keep_result": 0,
        "handle_signals": True,
        # SIGTERM: take no new job, let the running ones finish (a rolling update or a
        # scale-down must not interrupt a card charge halfway); after this, cancel + retry
        "job_completion_wait": round(settings.lifecycle.job_seconds),
        "health_check_interval": 10,
    }
    return type("WorkerSettings", (), options)
