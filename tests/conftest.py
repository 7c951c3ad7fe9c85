"""Test harness: real PostgreSQL, Redis, arq workers and sandbox partners.

Two isolated environments share the machine's services:
- in-process tests use database ``pizzeria_test`` and Redis db 15;
- the ``shop`` fixture runs the real processes (web, relay, workers) on database
  ``pizzeria_test_shop`` and Redis db 14, exactly as ``pizzeria up`` would.
Both talk to one sandbox partner process over HTTP.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.support import env

env.configure_in_process()  # before anything reads settings

from app.payment.provider import HttpPaymentProvider  # noqa: E402
from app.platform.db import create_engine, create_session_factory  # noqa: E402
from app.platform.pubsub import publisher  # noqa: E402
from app.platform.redis import create_redis  # noqa: E402
from app.platform.settings import get_settings  # noqa: E402
from app.platform.uow import react_in_transaction, read_your_writes  # noqa: E402
from app.status.service import project_in_transaction  # noqa: E402
from app.subscriptions import REACTIONS, SUBSCRIPTIONS  # noqa: E402
from tests.support.processes import Shop, start_sandbox, start_shop  # noqa: E402
from workers.context import payment_context, worker_context  # noqa: E402


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    with start_sandbox() as url:
        os.environ["PAYMENT_PROVIDER_URL"] = url
        os.environ["COURIER_PARTNER_URL"] = url
        get_settings.cache_clear()
        yield url


@pytest.fixture(scope="session")
def migrated_db() -> Iterator[str]:
    yield env.fresh_database(env.IN_PROCESS_DB)
    env.drop_database(env.IN_PROCESS_DB)


@pytest.fixture(scope="session")
async def engine(migrated_db: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(get_settings())
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def session_factory(engine: AsyncEngine, sandbox_url: str) -> async_sessionmaker[AsyncSession]:
    # with the partners up, as in production: placing an order asks the provider for a
    # card token (a test that places one passed only after another started the sandbox)
    factory = create_session_factory(engine)
    # as in the web: a use case's events are projected the moment it completes
    read_your_writes(factory, project_in_transaction, publisher(create_redis(get_settings())))
    # and the order follows its payment in it (an event left with nothing for the relay
    # written published)
    react_in_transaction(factory, REACTIONS, SUBSCRIPTIONS)
    return factory


@pytest.fixture
async def db(session_factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with session_factory() as session:
        yield session


@pytest.fixture
async def redis(migrated_db: str) -> AsyncIterator[Redis]:
    """A Redis client on the in-process test database (flushed at session start)."""
    client = create_redis(get_settings())
    yield client
    await client.aclose()


@pytest.fixture
async def ctx(
    session_factory: async_sessionmaker[AsyncSession], redis: Redis, sandbox_url: str
) -> AsyncIterator[dict[str, Any]]:
    """What a worker's startup puts in arq's ``ctx`` (``workers.context``), for calling
    handlers in-process: the payment worker's, on its first try."""
    settings = get_settings()
    base = worker_context(settings, session_factory, redis=redis, state_redis=redis)
    provider = HttpPaymentProvider.from_settings(settings)
    yield {**payment_context(base, provider), "job_try": 1}
    await provider.aclose()


@pytest.fixture(scope="session")
def shop(sandbox_url: str) -> Iterator[Shop]:
    """The whole shop as real processes against its own database and Redis db."""
    with start_shop(sandbox_url) as running:
        yield running


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as client:
        yield client


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    env.release_redis_dbs(env.IN_PROCESS_REDIS_DB, env.SHOP_REDIS_DB)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Figures a test measured (``record_property("figures", text)``), printed at the end of
    the run; this works under xdist too, where a test's own output is not shown."""
    reports = terminalreporter.getreports("passed") + terminalreporter.getreports("failed")
    figures = [
        f"{report.nodeid}\n{value}"
        for report in reports
        if report.when == "call"
        for name, value in report.user_properties
        if name == "figures"
    ]
    if figures:
        terminalreporter.section("figures")
        for text in figures:
            terminalreporter.write_line(text)
