"""PostgreSQL away (issue 9, found by the chaos suite): ordering answers 503 with
Retry-After, never 500, whether PostgreSQL is stopped, still starting up or hung (it
neither answers nor closes the connection: then after ``DATABASE_TIMEOUT_SECONDS``, not
never), and the checkout page keeps the basket. The web process runs against a PostgreSQL
cluster of the test's own (the shared one is never stopped) and a redis-server of its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.chaos.services import PostgresCluster
from tests.support import env
from tests.support.api import auth, browser_session, new_customer, order_body
from tests.support.processes import free_port, spawn, stop, wait_http
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(300)


@dataclass
class Outage:
    url: str
    postgres: PostgresCluster


@pytest.fixture(scope="module")
def own_shop(sandbox_url: str) -> Iterator[Outage]:
    folder = Path(tempfile.mkdtemp(prefix="pizzeria-pg-outage-"))
    folder.chmod(0o755)
    postgres = PostgresCluster(folder / "postgres")
    redis = RedisServer()
    postgres.init()
    redis.start()
    port = free_port()
    shop_env = {
        "DATABASE_URL": postgres.url(),
        "REDIS_URL": redis.url,
        "PAYMENT_PROVIDER_URL": sandbox_url,
        "COURIER_PARTNER_URL": sandbox_url,
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "RATE_LIMIT_SIGNUP_PER_CLIENT": "100000",
        "RATE_LIMIT_SIGNIN_PER_CLIENT": "100000",
        "DATABASE_TIMEOUT_SECONDS": "3",
    }
    web = None
    try:
        for command in (["migrate"], ["menu", "load-demo"]):
            subprocess.run(
                [sys.executable, "-m", "app.cli", *command],
                cwd=env.ROOT,
                env={**os.environ, **shop_env},
                check=True,
                capture_output=True,
            )
        web = spawn(["serve", "--port", str(port)], shop_env)
        wait_http(f"http://127.0.0.1:{port}/health/ready", web, timeout=240)
        yield Outage(f"http://127.0.0.1:{port}", postgres)
    finally:
        if web is not None:
            stop([web])
        redis.close()
        postgres.stop("immediate")
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def _unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert body["code"] == "unavailable" and "try again" in body["detail"]


async def _once_back(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """GET ``path`` as a person would after "please try again": until it is not a 503."""
    for _ in range(100):
        response = await client.get(path)
        if response.status_code != 503:
            return response
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} still 503 long after PostgreSQL came back")


async def test_ordering_answers_503_while_postgresql_is_stopped_or_starting_up(
    own_shop: Outage,
) -> None:
    async with httpx.AsyncClient(base_url=own_shop.url, timeout=20) as client:
        customer = await new_customer(client)
        async with httpx.AsyncClient(base_url=own_shop.url, timeout=20) as browser:
            csrf = await browser_session(browser, customer["email"])
            added = await browser.post(
                "/basket/add", data={"pizza_id": "1", "qty": "2", "_csrf_token": csrf}
            )
            assert added.status_code in (200, 303)
            form = (await browser.get("/checkout")).text
            assert "Margherita" in form
            try:
                for outage in ("stopped", "starting up"):
                    own_shop.postgres.stop()
                    if outage == "starting up":
                        own_shop.postgres.start_stuck_starting_up()
                    _unavailable(
                        await client.post("/api/orders", json=order_body(), headers=auth(customer))
                    )
                    page = await browser.post(
                        "/checkout",
                        data={
                            "address": "Via Roma 1, Napoli",
                            "card_number": "4242424242424242",
                            "idempotency_key": f"outage-{outage}",
                            "_csrf_token": csrf,
                        },
                    )
                    assert page.status_code == 503, page.text[:500]
                    assert page.headers["Retry-After"]
                    assert "please try again" in page.text
                    assert 'id="basket-count" class="pill">2<' in page.text
                    # the operator's report says which part is down (not a bare 503)
                    health = await client.get("/health")
                    assert health.status_code == 200, health.text
                    assert health.json()["status"] == "degraded"
                    assert health.json()["database"]["state"] == "unreachable"
            finally:
                own_shop.postgres.stop()
                own_shop.postgres.start()
            # the basket survived the outage, and so did what was typed (never the card)
            again = await _once_back(browser, "/checkout")
            assert "Margherita" in again.text
            assert 'value="Via Roma 1, Napoli"' in again.text
            assert "4242424242424242" not in again.text
        placed = await client.post("/api/orders", json=order_body(), headers=auth(customer))
        assert placed.status_code == 201, placed.text
        assert (await client.get("/health")).json()["database"] == {"state": "ok", "error": None}


async def test_requests_end_in_503_while_postgresql_hangs_and_work_once_it_answers(
    own_shop: Outage,
) -> None:
    async with httpx.AsyncClient(base_url=own_shop.url, timeout=60) as client:
        customer = await new_customer(client)
        own_shop.postgres.pause()
        try:
            # more requests than the web's pool holds connections: none waits for ever
            placed = await asyncio.gather(
                *(
                    client.post("/api/orders", json=order_body(), headers=auth(customer))
                    for _ in range(25)
                )
            )
            for answer in placed:
                _unavailable(answer)
            _unavailable(await client.get("/api/menu", headers=auth(customer)))
            ready = await client.get("/health/ready")
            assert ready.status_code == 503 and ready.headers["Retry-After"]
        finally:
            own_shop.postgres.resume()
        for _ in range(100):
            again = await client.post("/api/orders", json=order_body(), headers=auth(customer))
            if again.status_code != 503:
                break
            await asyncio.sleep(0.2)
        assert again.status_code == 201, again.text
