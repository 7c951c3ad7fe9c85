"""Fixtures for tests that talk to the running shop, and (``pipe``, ``fresh``,
``factory``) for those that run a pipeline of their own (``tests.support.pipeline``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

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
