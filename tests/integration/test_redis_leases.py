"""The test run's Redis databases: a shop started by one test gives back only its own."""

from __future__ import annotations

import redis

from tests.support import env


def test_releasing_a_shop_s_database_keeps_the_run_s_own_leases() -> None:
    extra = env.claim_redis_db()
    env.release_redis_dbs(extra)
    client = redis.Redis.from_url(f"{env.REDIS_BASE}/0")
    try:
        for db in (env.IN_PROCESS_REDIS_DB, env.SHOP_REDIS_DB):
            assert client.get(f"pizzeria:test-run:db{db}") == str(env._RUN).encode(), db
        assert client.get(f"pizzeria:test-run:db{extra}") is None
    finally:
        client.close()
