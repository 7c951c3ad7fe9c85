"""Fixtures for tests that talk to the running shop, and (``pipe``, ``fresh``,
``factory``) for those that run a pipeline of their own (``tests.support.pipeline``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from arq.connections import ArqRedis

from app.platform.redis import create_job_pool
from app.platform.settings import get_settings
from tests.support.api import staff_headers
from tests.support.pipeline import factory, fresh, pipe  # noqa: F401 (fixtures)
from tests.support.processes import Shop


@pytest.fixture
async def client(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the shop (enough connections for 20 concurrent requests)."""
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=shop.url, timeout=20, limits=limits) as client:
        yield client


@pytest.fixture
async def staff(client: httpx.AsyncClient, shop: Shop) -> dict[str, str]:
    """A staff member's bearer header."""
    return await staff_headers(client, shop.env)


@pytest.fixture
async def jobs() -> AsyncIterator[ArqRedis]:
    """An arq client on the test Redis: what is queued, and enqueuing as the relay does."""
    pool = await create_job_pool(get_settings())
    yield pool
    await pool.aclose()
