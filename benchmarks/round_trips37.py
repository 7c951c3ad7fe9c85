"""Seven round trips (BEGIN, five one-row inserts, COMMIT) against one statement doing the
same inserts as data-modifying CTEs: client and server CPU per transaction (round 37).
Run next to a PostgreSQL on 127.0.0.1:5432: ``uv run python benchmarks/round_trips37.py``."""

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

TABLES = "abcde"
INSERT = "INSERT INTO {} (id, k, v, j) VALUES ($1, $2, $3, $4::jsonb)"


def ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def one_statement() -> str:
    ctes = ", ".join(
        f"w{i} AS (INSERT INTO {t} (id, k, v, j) "
        f"VALUES (${4 * i + 1}, ${4 * i + 2}, ${4 * i + 3}, ${4 * i + 4}::jsonb))"
        for i, t in enumerate(TABLES)
    )
    return f"WITH {ctes} SELECT 1"


async def main() -> None:
    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    pid = conn.get_server_pid()
    for table in TABLES:
        await conn.execute(
            f"CREATE TEMP TABLE {table} (id uuid primary key, k int, v text, j jsonb)"
        )
    doc = json.dumps({"x": list(range(30))})
    together = one_statement()

    async def seven() -> None:
        async with conn.transaction():
            for table in TABLES:
                await conn.execute(INSERT.format(table), uuid.uuid4(), 1, "hello", doc)

    async def one() -> None:
        args: list[object] = []
        for _ in TABLES:
            args += [uuid.uuid4(), 1, "hello", doc]
        await conn.execute(together, *args)

    runs: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("7 round trips", seven),
        ("1 CTE", one),
    ]
    for name, run in runs * 2:
        for _ in range(200):
            await run()
        n, cpu, server, wall = 2000, time.process_time(), ticks(pid), time.perf_counter()
        for _ in range(n):
            await run()
        client_us = (time.process_time() - cpu) / n * 1e6
        server_us = (ticks(pid) - server) * 1e4 / n
        wall_us = (time.perf_counter() - wall) / n * 1e6
        figures = f"client {client_us:4.0f} µs  server {server_us:4.0f} µs  wall {wall_us:4.0f} µs"
        print(f"{name:14s} {figures}")


asyncio.run(main())
