"""What every arq worker shares: settings, database, Redis and partner clients in ``ctx``."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from arq import Retry
from arq.worker import Function, func

from app.platform import heartbeat
from app.platform.db import create_engine, create_session_factory
from app.platform.handlers import retry_delay
from app.platform.redis import arq_redis_settings, create_redis, dumps_job, loads_job
from app.platform.settings import get_settings

Task = Callable[..., Coroutine[Any, Any, Any]]
log = logging.getLogger("pizzeria.worker")


async def startup(ctx: dict[str, Any]) -> None:
    settings = get_settings()
    ctx["settings"] = settings
    ctx["engine"] = create_engine(settings, pool_size=settings.worker.db_pool)
    ctx["session_factory"] = create_session_factory(ctx["engine"])
    ctx["redis"] = create_redis(settings)
    ctx["heartbeat"] = heartbeat.start(settings.lifecycle.heartbeat_file)


async def shutdown(ctx: dict[str, Any]) -> None:
    await heartbeat.stop(ctx.get("heartbeat"))
    await ctx["redis"].aclose()
    await ctx["engine"].dispose()


def _never_dropped(name: str, task: Task) -> Task:
    """arq drops a job that raises; ours retry with backoff instead (a deadlock, a lost
    connection, a partner hiccup must delay work, never lose it). Handlers are idempotent,
    so running one again is always safe."""

    @functools.wraps(task)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await task(ctx, *args, **kwargs)
        except (Retry, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("%s failed (try %s); retrying", name, ctx.get("job_try"))
            raise Retry(defer=retry_delay(ctx.get("job_try", 1))) from exc

    return run


def worker_settings(
    queue: str,
    tasks: Sequence[tuple[str, Task]],
    *,
    on_startup: Callable[[dict[str, Any]], Coroutine[Any, Any, None]] | None = None,
    on_shutdown: Callable[[dict[str, Any]], Coroutine[Any, Any, None]] | None = None,
) -> type:
    """An arq ``WorkerSettings`` class for ``queue`` (so ``arq workers.<queue>.WorkerSettings``
    works too); see ``workers/<queue>.py``."""
    settings = get_settings()

    async def _startup(ctx: dict[str, Any]) -> None:
        await startup(ctx)
        if on_startup:
            await on_startup(ctx)

    async def _shutdown(ctx: dict[str, Any]) -> None:
        if on_shutdown:
            await on_shutdown(ctx)
        await shutdown(ctx)

    functions: list[Function] = [
        func(_never_dropped(name, task), name=name, max_tries=settings.worker.max_tries)
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
        "keep_result": 3600,
        "handle_signals": True,
        # SIGTERM: take no new job, let the running ones finish (a rolling update or a
        # scale-down must not interrupt a card charge halfway); after this, cancel + retry
        "job_completion_wait": round(settings.lifecycle.job_seconds),
        "health_check_interval": 10,
    }
    return type("WorkerSettings", (), options)
