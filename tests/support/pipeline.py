"""A small shop of our own for pipeline tests: its own database, its own redis-server
(which the test may kill and restart) and its own sandbox partners, with relay and
workers as real processes started by the test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.payment.models import Payment
from app.platform.outbox import ProcessBeat
from app.platform.settings import get_settings
from tests.support import env
from tests.support.inproc import as_in_the_web
from tests.support.processes import spawn, stop
from tests.support.redis_server import RedisServer

T = TypeVar("T")


@dataclass
class Pipeline:
    database_url: str
    redis: RedisServer
    sandbox_url: str
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        """``pizzeria ARGS`` as a process of this pipeline (stopped at the end)."""
        process = spawn(list(args), {**self.env, **extra_env})
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        stop(self.processes)
        self.processes.clear()


@contextlib.contextmanager
def pipeline(sandbox_url: str, **extra_env: str) -> Iterator[Pipeline]:
    """Its own database and redis-server; the sandbox partners are the test session's
    (card tokens are made there by ``place``)."""
    name = f"pizzeria_test_pipeline_{os.getpid()}"
    database = env.fresh_database(name, flush=False)
    server = RedisServer()
    server.start()
    running = Pipeline(
        database_url=database,
        redis=server,
        sandbox_url=sandbox_url,
        env={
            "DATABASE_URL": database,
            "REDIS_URL": server.url,
            "PAYMENT_PROVIDER_URL": sandbox_url,
            "COURIER_PARTNER_URL": sandbox_url,
            "PUBLIC_URL": "http://127.0.0.1:9",
            "HEARTBEAT_SECONDS": "0.5",
            "WORKER_RETRY_MAX_SECONDS": "1",
            "WORKER_DB_POOL": "2",
            **extra_env,
        },
    )
    try:
        yield running
    finally:
        running.stop_all()
        server.close()
        env.drop_database(name)


# -- fixtures: a test module that runs the pipeline imports them by name ------------------

Factory = async_sessionmaker[AsyncSession]


@pytest.fixture(scope="module")
def pipe(sandbox_url: str) -> Iterator[Pipeline]:
    """The module's own pipeline (database, redis-server; processes started by tests)."""
    with pipeline(sandbox_url) as running:
        yield running


@pytest.fixture
def fresh(pipe: Pipeline) -> Iterator[Pipeline]:
    """Each test starts with an empty Redis and no processes, and stops what it started."""
    pipe.redis.restart()
    yield pipe
    pipe.stop_all()


@pytest.fixture(scope="module")
async def factory(pipe: Pipeline) -> AsyncIterator[Factory]:
    """Sessions on the pipeline's database, committing as the web does. Orders are placed
    in this process (the web's use case, which tokenises the card at the pipeline's
    sandbox provider); everything after that runs in the processes."""
    saved = os.environ.get("PAYMENT_PROVIDER_URL")
    os.environ["PAYMENT_PROVIDER_URL"] = pipe.sandbox_url
    get_settings.cache_clear()
    engine = create_async_engine(pipe.database_url, pool_size=4)
    try:
        yield as_in_the_web(async_sessionmaker(engine, expire_on_commit=False))
    finally:
        await engine.dispose()
        if saved is None:
            os.environ.pop("PAYMENT_PROVIDER_URL", None)
        else:
            os.environ["PAYMENT_PROVIDER_URL"] = saved
        get_settings.cache_clear()


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 60.0
) -> T:
    """Poll ``probe`` until it returns something truthy (a positive signal), or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: Any = None
    while loop.time() < deadline:
        with contextlib.suppress(Exception):
            seen = await probe()
            if seen:
                return seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"never saw {what} within {timeout:.0f}s (last: {seen!r})")


async def payment_status(
    session_factory: async_sessionmaker[AsyncSession], order_id: uuid.UUID
) -> str | None:
    async with session_factory() as session:
        return await session.scalar(select(Payment.status).where(Payment.order_id == order_id))


async def beats(session_factory: async_sessionmaker[AsyncSession], kind: str) -> list[ProcessBeat]:
    async with session_factory() as session:
        return list(await session.scalars(select(ProcessBeat).where(ProcessBeat.kind == kind)))
