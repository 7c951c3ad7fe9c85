"""The whole shop behind PgBouncer in transaction pooling mode (what many replicas need:
PostgreSQL's 100 connections run out), with fewer server connections than clients.

Every pool (web, relay, workers) connects to PgBouncer with ``DATABASE_POOLING=
transaction``; the relay's ``LISTEN`` and the migrations go straight to PostgreSQL
(``DATABASE_DIRECT_URL``). Orders placed at once all get paid and delivered, and
PgBouncer's own statistics show the transactions went through it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import env
from tests.support.api import delivered_order, new_customer, staff_headers
from tests.support.processes import Shop, free_port, start_shop, stop

pytestmark = pytest.mark.timeout(600)

#: fewer server connections than the shop's processes have clients: they must share
SERVER_CONNECTIONS = 4
ORDERS = 6

PGBOUNCER_CONFIG = """
[databases]
* = host={host} port={port} user={user}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = any
admin_users = {user}
pool_mode = transaction
default_pool_size = {pool}
max_client_conn = 500
"""


def _pgbouncer_binary() -> str:
    path = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if path is None:
        if os.environ.get("CI") or os.environ.get("PIZZERIA_REQUIRE_BROWSER") == "1":
            pytest.fail("pgbouncer is missing: apt-get install pgbouncer (.ci/run does)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    return path


@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[str]:
    """PgBouncer on a free port in front of the test PostgreSQL; its base URL."""
    binary = _pgbouncer_binary()
    server = urlsplit(env.PG_BASE.replace("postgresql+asyncpg://", "postgresql://", 1))
    listen = free_port()
    with tempfile.TemporaryDirectory(prefix="pizzeria-pgbouncer-") as workdir:
        config = Path(workdir) / "pgbouncer.ini"
        config.write_text(
            PGBOUNCER_CONFIG.format(
                host=server.hostname,
                port=server.port or 5432,
                user=server.username or "postgres",
                listen=listen,
                pool=SERVER_CONNECTIONS,
            )
        )
        Path(workdir).chmod(0o755)
        # it refuses to run as root: drop to nobody then (a CI container is root)
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        process = subprocess.Popen([binary, *user, str(config)], stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    subprocess.run(
                        ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(listen)], check=True
                    )
                    break
                except subprocess.CalledProcessError:
                    assert process.poll() is None, process.stderr and process.stderr.read()
                    assert time.monotonic() < deadline, "pgbouncer did not start"
                    time.sleep(0.1)
            yield f"postgresql+asyncpg://{server.username or 'postgres'}@127.0.0.1:{listen}"
        finally:
            stop([process])


@pytest.fixture(scope="module")
def pooled_shop(sandbox_url: str, pgbouncer: str) -> Iterator[Shop]:
    name = f"pizzeria_test_pooled_{os.getpid()}"
    redis_db = env.claim_redis_db()
    try:
        with start_shop(
            sandbox_url,
            database_name=name,
            redis_db=redis_db,
            extra_env={
                "DATABASE_URL": f"{pgbouncer}/{name}",
                "DATABASE_DIRECT_URL": env.database_url(name),
                "DATABASE_POOLING": "transaction",
                "PARTNER_TIMEOUT": "5",
            },
        ) as shop:
            yield shop
    finally:
        env.release_redis_dbs(redis_db)


def _transactions_through(pgbouncer: str, database: str) -> int:
    """PgBouncer's own count of the transactions it pooled for ``database`` (its admin
    console speaks only the simple query protocol: psql, not asyncpg)."""
    admin = pgbouncer.replace("postgresql+asyncpg://", "postgresql://", 1) + "/pgbouncer"
    output = subprocess.run(
        ["psql", admin, "-AF|", "-c", "SHOW STATS"], capture_output=True, text=True, check=True
    ).stdout
    header, *rows = output.splitlines()
    column = header.split("|").index("total_xact_count")
    for row in rows:
        fields = row.split("|")
        if fields[0] == database:
            return int(fields[column])
    return 0


async def test_orders_go_through_pgbouncer_in_transaction_pooling_mode(
    pooled_shop: Shop, pgbouncer: str
) -> None:
    name = pooled_shop.env["DATABASE_DIRECT_URL"].rsplit("/", 1)[1]
    before = _transactions_through(pgbouncer, name)
    limits = httpx.Limits(max_connections=ORDERS * 2)
    async with httpx.AsyncClient(base_url=pooled_shop.url, timeout=30, limits=limits) as client:
        staff = await staff_headers(client, pooled_shop.env)
        customers = [await new_customer(client) for _ in range(ORDERS)]
        # at once: more transactions in flight than PgBouncer has server connections
        delivered = await asyncio.gather(
            *(delivered_order(client, customer, staff) for customer in customers)
        )
    assert [order["status"] for order in delivered] == ["fulfilled"] * ORDERS
    pooled = _transactions_through(pgbouncer, name) - before
    assert pooled > ORDERS * 10, f"only {pooled} transactions went through PgBouncer"
