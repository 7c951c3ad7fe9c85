"""Sessions, rate limits and circuit breakers on a Redis Cluster (the state role:
``REDIS_STATE_URL`` + ``REDIS_STATE_CLUSTER=1``), against three nodes this test starts.

A cluster refuses a script or a transaction whose keys live in different slots
(``CROSSSLOT``): the breaker's two keys share a hash tag, and the rate limiter bumps each
counter on its own. The checks use the shop's own client factory and classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis, RedisCluster

from app.platform.breaker import BreakerPolicy, CircuitBreaker, breaker_keys
from app.platform.ratelimit import Limit, RateLimiter, TooManyRequests
from app.platform.redis import create_state_redis
from app.platform.settings import RedisSettings, Settings
from tests.support import env
from tests.support.api import new_customer, paid_order
from tests.support.processes import Shop, free_port, start_shop, stop

NODES = 3


@contextlib.contextmanager
def redis_cluster() -> Iterator[list[int]]:
    """Three masters, no replicas, keeping nothing on disk; their ports."""
    ports = [_node_port() for _ in range(NODES)]
    with tempfile.TemporaryDirectory(prefix="pizzeria-cluster-") as workdir:
        processes: list[subprocess.Popen[bytes]] = []
        try:
            for port in ports:
                node = Path(workdir) / str(port)
                node.mkdir()
                processes.append(
                    subprocess.Popen(
                        [
                            "redis-server",
                            "--port",
                            str(port),
                            "--bind",
                            "127.0.0.1",
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            str(node / "nodes.conf"),
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                            "--dir",
                            str(node),
                        ],
                        stdout=subprocess.DEVNULL,
                    )
                )
            for port in ports:
                _wait(lambda port=port: _cli(port, "ping") == "PONG", f"node {port}")
            subprocess.run(
                ["redis-cli", "--cluster", "create"]
                + [f"127.0.0.1:{port}" for port in ports]
                + ["--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            for port in ports:
                _wait(
                    lambda port=port: "cluster_state:ok" in _cli(port, "cluster", "info"),
                    f"the cluster, seen from {port}",
                )
            yield ports
        finally:
            stop(processes)


def _node_port() -> int:
    """A free port whose cluster bus port (+10000) is a port too, and free."""
    while True:
        port = free_port()
        if port + 10000 <= 65535 and _free(port + 10000):
            return port


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _cli(port: int, *command: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *command], capture_output=True, text=True, timeout=10
    )
    return done.stdout.strip()


def _wait(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never got {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    with redis_cluster() as ports:
        yield ports


@pytest.fixture
async def state(cluster_ports: list[int]) -> AsyncIterator[Redis]:
    """The shop's state client, made the way every part makes it."""
    settings = Settings(
        redis=RedisSettings(
            url="redis://127.0.0.1:1/0",  # the other roles: not used here
            state_url_setting=f"redis://127.0.0.1:{cluster_ports[0]}",
            state_cluster=True,
        )
    )
    client = create_state_redis(settings)
    assert isinstance(client, RedisCluster)
    try:
        yield client
    finally:
        await client.aclose()


class PartnerDown(Exception):
    pass


async def _down() -> None:
    raise PartnerDown


async def test_the_breaker_opens_and_recovers_on_a_cluster(state: Redis) -> None:
    name = f"cluster-{uuid.uuid4().hex[:8]}"
    cluster: RedisCluster = state  # type: ignore[assignment]
    slots = {cluster.keyslot(key) for key in breaker_keys(name)}
    assert len(slots) == 1, "both keys in one slot, or the scripts fail with CROSSSLOT"
    policy = BreakerPolicy(
        window_size=4,
        minimum_calls=2,
        open_seconds=0.2,
        half_open_calls=1,
        closed_lease_seconds=0.1,
    )
    breaker = CircuitBreaker(state, name, policy, (PartnerDown,))
    for _ in range(policy.minimum_calls):
        with contextlib.suppress(PartnerDown):
            await breaker.call(_down)
    assert (await breaker.state()).state == "open"

    await asyncio.sleep(policy.open_seconds)  # the breaker's own clock: then one trial

    async def ok() -> str:
        return "ok"

    assert await breaker.call(ok) == "ok"
    assert (await breaker.state()).state == "closed"
    await breaker.reset()


async def test_rate_limits_count_keys_that_live_on_different_nodes(state: Redis) -> None:
    cluster: RedisCluster = state  # type: ignore[assignment]
    account, address = f"acct-{uuid.uuid4().hex}", f"10.0.{uuid.uuid4().int % 250}.1"
    per_account = Limit(f"cluster-account-{uuid.uuid4().hex[:6]}", max_hits=3, per_seconds=60)
    per_client = Limit(f"cluster-client-{uuid.uuid4().hex[:6]}", max_hits=100, per_seconds=60)
    limiter = RateLimiter(state)
    for _ in range(per_account.max_hits):
        await limiter.hit((per_account, account), (per_client, address))
    with pytest.raises(TooManyRequests) as refused:
        await limiter.hit((per_account, account), (per_client, address))
    assert 1 <= refused.value.retry_after <= 61

    await limiter.count(per_account, account)
    keys = [key async for key in cluster.scan_iter(match="ratelimit:*")]
    assert len({cluster.keyslot(key) for key in keys}) > 1, "the counters spread over slots"
    lifetimes = [await state.ttl(key) for key in keys]
    assert all(0 < seconds <= 61 for seconds in lifetimes), "every counter expires"


async def test_sessions_are_kept_renewed_and_ended_on_a_cluster(state: Redis) -> None:
    store = RedisStore(state, namespace="pizzeria:session")
    session_id = uuid.uuid4().hex
    await store.set(session_id, b'{"basket": [1]}', expires_in=60)
    # the shop's clients decode answers (as the web's session store sees them)
    assert await store.get(session_id, renew_for=120) == '{"basket": [1]}'
    assert 60 < await store.expires_in(session_id) <= 120, "renewed by the store's script"
    await store.delete(session_id)
    assert await store.get(session_id) is None


@pytest.fixture(scope="module")
def split_shop(sandbox_url: str, cluster_ports: list[int]) -> Iterator[Shop]:
    """A shop with one Redis per role: pub/sub, queues, and the state role on the cluster."""
    pubsub_db, queue_db = env.claim_redis_db(), env.claim_redis_db()
    try:
        with start_shop(
            sandbox_url,
            database_name=f"pizzeria_test_split_{os.getpid()}",
            redis_db=pubsub_db,
            extra_env={
                "REDIS_QUEUE_URL": env.redis_url(queue_db),
                "REDIS_STATE_URL": f"redis://127.0.0.1:{cluster_ports[1]}",
                "REDIS_STATE_CLUSTER": "1",
                "PARTNER_TIMEOUT": "5",
                # every outcome written as it comes (no successes held back within a
                # lease): one order leaves the payment breaker's window on the cluster
                "BREAKER_CLOSED_LEASE_SECONDS": "0",
            },
        ) as shop:
            yield shop
    finally:
        env.release_redis_dbs(pubsub_db, queue_db)


async def test_the_shop_runs_with_a_redis_per_role_and_its_state_on_the_cluster(
    split_shop: Shop, cluster_ports: list[int]
) -> None:
    async with httpx.AsyncClient(base_url=split_shop.url, timeout=30) as client:
        customer = await new_customer(client)  # the sign-up's rate limits: on the cluster
        order = await paid_order(client, customer)  # charged through the payment breaker
    assert order["delivery"] is not None

    cluster = RedisCluster(host="127.0.0.1", port=cluster_ports[0], decode_responses=True)
    queues = Redis.from_url(split_shop.env["REDIS_QUEUE_URL"], decode_responses=True)
    pubsub = Redis.from_url(split_shop.env["REDIS_URL"], decode_responses=True)
    try:
        assert await cluster.exists(*breaker_keys("payment")), "the breaker's state"
        assert [key async for key in cluster.scan_iter(match="ratelimit:*")], "rate limits"
        assert [key async for key in queues.scan_iter(match="*:health-check")], "arq's queues"
        assert not [key async for key in pubsub.scan_iter(match="breaker:*")]
        assert not [key async for key in pubsub.scan_iter(match="*:health-check")]
    finally:
        await cluster.aclose()
        await queues.aclose()
        await pubsub.aclose()
