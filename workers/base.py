"""What every arq worker shares: settings, database, Redis and partner clients in ``ctx``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from arq.worker import Function, func

from app.platform.db import create_engine, create_session_factory
from app.platform.redis import arq_redis_settings, create_redis, dumps_job, loads_job
from app.platform.settings import get_settings

Task = Callable[..., Coroutine[Any, Any, Any]]


async def startup(ctx: dict[str, Any]) -> None:
    settings = get_settings()
    ctx["settings"] = settings
    ctx["engine"] = create_engine(settings)
    ctx["session_factory"] = create_session_factory(ctx["engine"])
    ctx["redis"] = create_redis(settings)


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["redis"].aclose()
    await ctx["engine"].dispose()


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
        func(task, name=name, max_tries=settings.worker.max_tries) for name, task in tasks
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
        "health_check_interval": 10,
    }
    return type("WorkerSettings", (), options)
