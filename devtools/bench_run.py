"""``pizzeria bench orders``: one run, every figure of issue 11.

Phases, in this order, against one shop (started here, or a running one):

1. ``lone``: orders placed one at a time; place -> paid and place -> delivery created, as
   the customer's view shows them (woken by the projector's ``order:<id>`` notification);
2. ``idle``: CPU each part burns while nothing happens (polling workers, the relay's
   safety poll, the launcher), and the idle rate of PostgreSQL transactions and Redis
   commands, so both can be taken out of the per-order cost;
3. ``load``: ``POST /api/orders`` from ``concurrency`` clients with the workers running,
   then until every one of those orders is paid and has its delivery: placement rate and
   latency, throughput through payment, the CPU every process spent per order, and the
   work per order that does not depend on the machine's load (transactions, rows
   written, Redis commands);
4. ``sse`` (optional): viewers of one order: memory per idle stream, change -> frame;
5. ``alone`` (optional): placement again with the relay and the workers paused: what
   placing an order costs by itself, per part, and the api/raw a machine given to
   placement alone would show;
6. ``raw``: the issue's SQL transaction straight through asyncpg, statement by
   statement, for the ratio, and the CPU one raw transaction costs (PostgreSQL and the
   bench's own process); then the SQL the shop sends now (one statement) the same way,
   for the stricter ratio (``devtools.bench``'s doc).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import statistics
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import click
import httpx

from devtools.bench import (
    ApiCustomer,
    Result,
    bench_api,
    bench_customer,
    bench_raw,
    open_client,
    place_one,
    raw_lines,
)
from devtools.bench_cpu import (
    CpuMeter,
    ProcessTree,
    Snapshot,
    part_name,
    process_cpu_seconds,
    shares,
    spent,
)
from devtools.bench_shop import Shop
from devtools.bench_speed import SpeedProbe

PAID = ("paid", "fulfilled", "refunded")
FAILED = ("payment_failed", "cancelled")
VIEW_STATE = """
SELECT doc->>'status' AS status, jsonb_typeof(doc->'delivery') = 'object' AS delivery
FROM status.order_views WHERE order_id = $1
"""
DONE_COUNT = """
SELECT count(*) FILTER (WHERE doc->>'status' = ANY($2::text[])
                          AND jsonb_typeof(doc->'delivery') = 'object') AS paid,
       count(*) FILTER (WHERE doc->>'status' = ANY($3::text[])) AS failed
FROM status.order_views WHERE order_id = ANY($1::uuid[])
"""


@dataclass
class Options:
    concurrency: int = 16
    duration: float = 10.0
    warmup: float = 2.0
    lone: int = 30
    idle: float = 3.0
    sse_viewers: int = 0
    drain_timeout: float = 180.0
    #: customers each watching its own order on one web process, and order events per s
    sse_clients: int = 0
    sse_rate: float = 50.0
    #: orders placed a second (an arrival rate) instead of back to back
    rate: float | None = None
    #: also place orders with the relay and the workers paused (``alone_phase``)
    alone: bool = False


@dataclass
class Report:
    """Everything measured; ``as_json`` is what ``--json`` writes."""

    shop: dict[str, Any] = field(default_factory=dict)
    idle_ms_per_s: dict[str, float] = field(default_factory=dict)
    lone: dict[str, Any] = field(default_factory=dict)
    api: Result | None = None
    raw: Result | None = None
    #: the raw run of the SQL the shop sends now (one statement: ``bench.ONE_STATEMENT``)
    raw_one: Result | None = None
    pipeline: dict[str, Any] = field(default_factory=dict)
    cpu_gross_ms: dict[str, float] = field(default_factory=dict)
    cpu_per_order_ms: dict[str, float] = field(default_factory=dict)
    sse: dict[str, Any] = field(default_factory=dict)
    sse_orders: dict[str, Any] = field(default_factory=dict)
    #: seconds the raw run waited for the shop to go quiet (``quiet_phase``)
    quiet_wait_s: float = 0.0
    #: CPU ms one raw transaction cost, by part (PostgreSQL, the bench's own process)
    raw_cpu_ms: dict[str, float] = field(default_factory=dict)
    raw_one_cpu_ms: dict[str, float] = field(default_factory=dict)
    alone: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        def result(r: Result | None) -> dict[str, Any] | None:
            if r is None:
                return None
            return {
                "rate": round(r.rate, 2),
                "n": len(r.latencies),
                "p50_ms": round(r.percentile(50), 2),
                "p90_ms": round(r.percentile(90), 2),
                "p99_ms": round(r.percentile(99), 2),
                "max_ms": round(r.percentile(100), 2),
                "errors": dict(r.errors.most_common(5)),
            }

        ratio = _ratio(self.api, self.raw)
        return {
            "shop": self.shop,
            "machine": machine(),
            "placement": {
                "api": result(self.api),
                "raw": result(self.raw),
                "ratio": ratio,
                "raw_one_statement": result(self.raw_one),
                "ratio_one_statement": _ratio(self.api, self.raw_one),
                "raw_waited_for_quiet_s": self.quiet_wait_s,
                "raw_cpu_ms_per_tx": self.raw_cpu_ms,
                "raw_cpu_ms_per_tx_total": round(sum(self.raw_cpu_ms.values()), 2),
                "raw_one_statement_cpu_ms_per_tx": self.raw_one_cpu_ms,
            },
            "placement_alone": self.alone,
            "lone": self.lone,
            "pipeline": self.pipeline,
            "idle_cpu_ms_per_s": _rounded(self.idle_ms_per_s),
            "cpu_ms_per_order": _rounded(self.cpu_per_order_ms),
            "cpu_ms_per_order_total": round(sum(self.cpu_per_order_ms.values()), 2),
            "cpu_per_order_in_probes": self.in_probes(),
            "sse": self.sse,
            "sse_orders": self.sse_orders,
        }

    def in_probes(self) -> float | None:
        """CPU per order, all processes, in units of the speed probe's work
        (``devtools.bench_speed``): comparable across runs at different machine speeds."""
        probe_ms: float | None = self.pipeline.get("speed_probe", {}).get("probe_ms_p50")
        if not probe_ms or not self.cpu_per_order_ms:
            return None
        return round(sum(self.cpu_per_order_ms.values()) / probe_ms, 2)


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in values.items()}


def _ratio(api: Result | None, raw: Result | None) -> dict[str, float] | None:
    if not (api and raw and api.latencies and raw.latencies and raw.rate):
        return None
    return {
        "rate": round(api.rate / raw.rate, 3),
        "p50": round(api.percentile(50) / raw.percentile(50), 2),
        "p99": round(api.percentile(99) / raw.percentile(99), 2),
    }


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --------------------------------------------------------------------------- work counts

PG_WORK = """
SELECT sum(xact_commit + xact_rollback)::bigint AS transactions,
       sum(tup_inserted + tup_updated + tup_deleted)::bigint AS rows_written
FROM pg_stat_database
"""
#: PostgreSQL publishes a backend's counters when it has been idle for up to 10 s
PG_STATS_SETTLE = 11.0


class WorkCounter:
    """Work that does not depend on how loaded the machine is: PostgreSQL transactions
    and rows written (``pg_stat_database``) and Redis commands (``INFO stats``)."""

    def __init__(self, pool: Any, redis_url: str | None) -> None:
        self.pool = pool
        self.redis_url = redis_url
        #: statements the bench itself sent between two readings (one transaction each)
        self.own = 0

    async def read(self) -> dict[str, float]:
        row = await self.pool.fetchrow(PG_WORK)
        counts = {
            "pg_transactions": float(row["transactions"]),
            "pg_rows_written": float(row["rows_written"]),
        }
        if self.redis_url:
            from redis.asyncio import Redis

            redis = Redis.from_url(self.redis_url)
            try:
                info = await redis.info("stats")
                counts["redis_commands"] = float(info["total_commands_processed"])
            finally:
                await redis.aclose()
        return counts


#: what one ``WorkCounter.read`` adds to the counters it reads: its ``pg_stat_database``
#: query is a transaction, its ``INFO`` a Redis command
OWN_PER_READ = {"pg_transactions": 1.0, "redis_commands": 1.0}


def idle_work_rates(
    before: dict[str, float], after: dict[str, float], seconds: float, idle: float
) -> dict[str, float]:
    """Work per second while the shop stood idle, taken out of the load's counts. None
    without an idle phase (``--idle 0``): the two readings a few milliseconds apart made
    the reading's own ``INFO`` look like hundreds of commands a second, and the load's
    Redis commands per order printed as 0."""
    if idle <= 0 or seconds <= 0:
        return {}
    return {
        key: max(0.0, value - before.get(key, value) - OWN_PER_READ.get(key, 0.0)) / seconds
        for key, value in after.items()
    }


def per_unit(
    before: dict[str, float],
    after: dict[str, float],
    idle: dict[str, float],
    seconds: float,
    own: int,
    units: int,
) -> dict[str, float]:
    """(after - before - idle rate x seconds) / units, per counter; the bench's own
    statements are taken out of the transactions."""
    out: dict[str, float] = {}
    for key, value in after.items():
        spent_ = value - before.get(key, value) - idle.get(key, 0.0) * seconds
        if key == "pg_transactions":
            spent_ -= own
        out[key] = round(max(0.0, spent_) / max(1, units), 2)
    return out


# --------------------------------------------------------------------------- phases


async def idle_phase(tree: ProcessTree | None, seconds: float) -> dict[str, float]:
    """CPU ms per second each part spends doing nothing useful."""
    if tree is None or seconds <= 0:
        await asyncio.sleep(seconds)
        return {}
    before, began = tree.snapshot(), time.perf_counter()
    await asyncio.sleep(seconds)
    after, elapsed = tree.snapshot(), time.perf_counter() - began
    return {part: used * 1000 / elapsed for part, used in spent(before, after).items()}


#: the shop is quiet when its parts together burn at most this many times their idle CPU
#: plus this floor (ms of CPU a second), over one look of ``QUIET_LOOK_S``; the raw run
#: waits for that at most ``QUIET_LIMIT_S``
QUIET_FACTOR, QUIET_FLOOR_MS_PER_S, QUIET_LOOK_S, QUIET_LIMIT_S = 2.0, 30.0, 0.5, 60.0


async def quiet_phase(tree: ProcessTree | None, idle_ms_per_s: dict[str, float]) -> float:
    """Wait until the shop's parts are back near their idle CPU; the seconds waited.

    An order's tail (the courier's webhooks, their projections) comes seconds after it
    is paid, and after a long backlog it was still running while the raw transaction was
    measured: the raw rate then ran from 344 to 879 a second across runs of one tree,
    and api/raw with it. The raw run gets the machine a quiet shop leaves it, every run
    alike (the strictest ratio: raw at its best)."""
    if tree is None:
        return 0.0
    ceiling = QUIET_FACTOR * sum(idle_ms_per_s.values()) + QUIET_FLOOR_MS_PER_S
    began = time.perf_counter()
    before, looked = tree.snapshot(), began
    while looked - began < QUIET_LIMIT_S:
        await asyncio.sleep(QUIET_LOOK_S)
        after, now = tree.snapshot(), time.perf_counter()
        if sum(spent(before, after).values()) * 1000 / (now - looked) <= ceiling:
            break
        before, looked = after, now
    return round(time.perf_counter() - began, 2)


async def lone_phase(
    client: httpx.AsyncClient,
    customer: ApiCustomer,
    body: dict[str, Any],
    pool: Any,
    redis_url: str,
    count: int,
) -> dict[str, Any]:
    """Orders one at a time: place → paid, place → delivery created (ms)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    woken: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
    pubsub = redis.pubsub()
    await pubsub.psubscribe("order:*")

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                channel = message["channel"]
                channel = channel.decode() if isinstance(channel, bytes) else str(channel)
                woken[channel.removeprefix("order:")].set()

    reader = asyncio.create_task(listen())
    paid: list[float] = []
    delivered: list[float] = []
    failures: list[str] = []
    try:
        for _ in range(count):
            began = time.perf_counter()
            order_id, error = await place_one(client, customer, body)
            if order_id is None:
                failures.append(error or "?")
                continue
            paid_at = delivery_at = None
            deadline = began + 30
            while (paid_at is None or delivery_at is None) and time.perf_counter() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken[order_id].wait(), 0.5)
                seen = time.perf_counter()
                woken[order_id].clear()
                row = await pool.fetchrow(VIEW_STATE, uuid.UUID(order_id))
                if row is None:
                    continue
                if paid_at is None and row["status"] in PAID:
                    paid_at = seen
                if delivery_at is None and row["delivery"]:
                    delivery_at = seen
                if row["status"] in FAILED:
                    failures.append(row["status"])
                    break
            woken.pop(order_id, None)
            if paid_at is not None:
                paid.append((paid_at - began) * 1000)
            if delivery_at is not None:
                delivered.append((delivery_at - began) * 1000)
            await asyncio.sleep(0.05)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await pubsub.aclose()
        await redis.aclose()
    return {
        "n": count,
        "paid_n": len(paid),
        "place_to_paid_p50_ms": round(percentile(paid, 50), 1),
        "place_to_paid_p99_ms": round(percentile(paid, 99), 1),
        "place_to_delivery_p50_ms": round(percentile(delivered, 50), 1),
        "place_to_delivery_p99_ms": round(percentile(delivered, 99), 1),
        "failures": failures[:5],
    }


async def load_phase(
    client: httpx.AsyncClient,
    customer: ApiCustomer,
    body: dict[str, Any],
    pool: Any,
    tree: ProcessTree | None,
    options: Options,
    work: WorkCounter,
    work_idle: dict[str, float],
) -> tuple[Result, dict[str, Any], dict[str, float]]:
    """Placement under load, then until every placed order is paid with its delivery."""
    placed: list[str] = []
    work_before = await work.read()
    work.own = 1
    before: Snapshot | None = tree.snapshot() if tree else None
    client_cpu = process_cpu_seconds()
    probe = SpeedProbe()
    began = time.perf_counter()
    watching = asyncio.create_task(_watch_backlog(pool, placed, began))
    web_before = tree.cpu_by_process("web") if tree else {}
    web_scheduled = (tree.scheduled("web"), time.perf_counter()) if tree else None
    try:
        api = await bench_api(
            client,
            customer,
            body,
            options.concurrency,
            options.warmup,
            options.duration,
            placed,
            options.rate,
        )
    finally:
        watching.cancel()
    web_split = shares(web_before, tree.cpu_by_process("web")) if tree else []
    web_time = _time_shares(web_scheduled, tree.scheduled("web")) if tree else {}
    backlog = await _settled(watching)
    placing_ended = time.perf_counter()
    ids = [uuid.UUID(i) for i in placed]
    paid, failed, looks = await _finished(pool, ids, placing_ended + options.drain_timeout)
    work.own += looks
    done = time.perf_counter()
    speed = probe.stop()
    gross: dict[str, float] = {}
    if tree and before:
        gross = {part: used * 1000 for part, used in spent(before, tree.snapshot()).items()}
    client_ms = (process_cpu_seconds() - client_cpu) * 1000
    await asyncio.sleep(PG_STATS_SETTLE)
    work_after = await work.read()
    work_seconds = time.perf_counter() - began
    pipeline = {
        "orders": len(ids),
        "paid_with_delivery": paid,
        "failed": failed,
        "unfinished": len(ids) - paid - failed,
        "seconds": round(done - began, 2),
        "orders_per_s_through_payment": round(paid / (done - began), 2) if ids else 0.0,
        "drain_after_placement_s": round(done - placing_ended, 2),
        "arrival_rate": options.rate,
        "backlog": backlog_figures(backlog, options.warmup),
        "bench_client_cpu_ms_per_order": round(client_ms / max(1, len(ids)), 2),
        "work_per_order": per_unit(
            work_before, work_after, work_idle, work_seconds, work.own, len(ids)
        ),
        "speed_probe": speed,
        "web_cpu_split_percent": web_split,
        "web_time_percent": web_time,
    }
    return api, pipeline, gross


def _time_shares(
    before: tuple[tuple[float, float], float] | None, after: tuple[float, float]
) -> dict[str, float]:
    """The web's run time and its wait for a CPU while orders were placed, in % of the
    wall time (summed over its processes). Run plus wait near 100 % per process: the web
    was never waiting for anything but a core, so CPU priority, not its own code, held it
    back (how round 30 found the autogroups)."""
    if before is None:
        return {}
    (run, wait), began = before
    seconds = time.perf_counter() - began
    if seconds <= 0:
        return {}
    return {
        "ran": round((after[0] - run) / seconds * 100, 1),
        "waited_for_a_cpu": round((after[1] - wait) / seconds * 100, 1),
    }


async def _finished(pool: Any, ids: list[uuid.UUID], deadline: float) -> tuple[int, int, int]:
    """Wait until every order of ``ids`` is paid with its delivery, or failed, or the
    deadline passed: (paid, failed, statements the bench sent to find out)."""
    paid = failed = looks = 0
    while time.perf_counter() < deadline:
        row = await pool.fetchrow(DONE_COUNT, ids, list(PAID), list(FAILED))
        looks += 1
        paid, failed = int(row["paid"]), int(row["failed"])
        if paid + failed >= len(ids):
            break
        await asyncio.sleep(0.1)
    return paid, failed, looks


def _background(part: str) -> bool:
    """The parts whose work follows a placement: paused by ``alone_phase``."""
    return part == "relay" or part.startswith("worker-")


async def alone_phase(
    client: httpx.AsyncClient,
    customer: ApiCustomer,
    body: dict[str, Any],
    pool: Any,
    tree: ProcessTree,
    options: Options,
    idle_ms_per_s: dict[str, float],
) -> dict[str, Any]:
    """Placement with the relay and every worker stopped (SIGSTOP), so the CPU each part
    spends is placement's own: what the load run's rate is made of, apart from the
    payments, deliveries and projections running beside it. The workers are paused
    once the shop is quiet (no job is cut in half) and go on afterwards; the orders
    placed meanwhile are paid before the next run."""
    await quiet_phase(tree, idle_ms_per_s)
    meter = CpuMeter(tree, idle_ms_per_s)
    placed: list[str] = []
    stopped = tree.pause(_background)
    paused = sorted(part_name(process) for process in stopped)
    try:
        api = await bench_api(
            client,
            customer,
            body,
            options.concurrency,
            options.warmup,
            options.duration,
            placed,
            meter=meter,
        )
    finally:
        tree.resume(stopped)
    ids = [uuid.UUID(i) for i in placed]
    paid, failed, _ = await _finished(pool, ids, time.perf_counter() + options.drain_timeout)
    cpu = meter.per_unit(api.completed)
    return {
        "paused": paused,
        "rate": round(api.rate, 2),
        "p50_ms": round(api.percentile(50), 2),
        "p99_ms": round(api.percentile(99), 2),
        "errors": dict(api.errors.most_common(5)),
        "orders": len(ids),
        "paid_after": paid,
        "failed_after": failed,
        "cpu_ms_per_order": cpu,
        "cpu_ms_per_order_total": round(sum(cpu.values()), 2),
    }


#: seconds between two looks at the backlog while orders are being placed
BACKLOG_EVERY = 0.5


async def _watch_backlog(pool: Any, placed: list[str], began: float) -> list[tuple[float, int]]:
    """(seconds since placing began, orders placed and not yet paid with their delivery)
    every ``BACKLOG_EVERY`` seconds, until cancelled."""
    samples: list[tuple[float, int]] = []
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(BACKLOG_EVERY)
            ids = [uuid.UUID(i) for i in list(placed)]
            row = await pool.fetchrow(DONE_COUNT, ids, list(PAID), list(FAILED))
            left = len(ids) - int(row["paid"]) - int(row["failed"])
            samples.append((time.perf_counter() - began, left))
    return samples


async def _settled(task: asyncio.Task[list[tuple[float, int]]]) -> list[tuple[float, int]]:
    try:
        return await task
    except asyncio.CancelledError:
        return []


def backlog_figures(samples: list[tuple[float, int]], warmup: float) -> dict[str, float]:
    """The backlog while placing: its largest and last size, and how fast it grew over
    the measured window (least squares, orders a second; about 0 when the shop keeps up)."""
    window = [(t, n) for t, n in samples if t >= warmup] or samples
    if len(window) < 2:
        return {}
    mean_t = sum(t for t, _ in window) / len(window)
    mean_n = sum(n for _, n in window) / len(window)
    spread = sum((t - mean_t) ** 2 for t, _ in window)
    slope = sum((t - mean_t) * (n - mean_n) for t, n in window) / spread if spread else 0.0
    return {
        "max": max(n for _, n in window),
        "last": window[-1][1],
        "growth_per_s": round(slope, 2),
    }


def require_one_web_process(processes: dict[str, int]) -> None:
    """The live-update figures are one web process's (its memory per stream, its CPU per
    change): with several sharing the port, the streams are spread over them and the
    figures would read one of them as if it held all."""
    if processes.get("web", 1) > 1:
        raise click.ClickException(
            f"the shop runs {processes['web']} web processes; the live-update figures are one"
            " process's: run it with PIZZERIA_WEB_REPLICAS=1 (the bench's own shop does)"
        )


async def run(shop: Shop, options: Options) -> Report:
    import asyncpg

    from app.platform.db import asyncpg_dsn

    report = Report()
    tree = ProcessTree(shop.up_pid) if shop.up_pid else None
    report.shop = {
        "url": shop.url,
        "started_by_bench": shop.started_here,
        "processes_measured": tree is not None,
        "niceness": tree.niceness() if tree is not None else {},
        "processes": tree.processes() if tree is not None else {},
    }
    if not shop.database_url:
        raise click.ClickException("no database: give --database-url (or set DATABASE_URL)")
    if options.sse_viewers or options.sse_clients:
        require_one_web_process(report.shop["processes"])
    dsn = asyncpg_dsn(shop.database_url)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        async with open_client(shop.url, options.concurrency) as client:
            customer, body = await bench_customer(client)
            for _ in range(5):  # warm the shop's pools and caches
                await place_one(client, customer, body)
            await asyncio.sleep(1.0)
            if options.lone and shop.redis_url:
                click.echo(f"lone orders x{options.lone} …", err=True)
                report.lone = await lone_phase(
                    client, customer, body, pool, shop.redis_url, options.lone
                )
            await asyncio.sleep(PG_STATS_SETTLE)  # the lone orders' tails and counters settle
            click.echo("idle …", err=True)
            work = WorkCounter(pool, shop.redis_url)
            idle_from, idle_began = await work.read(), time.perf_counter()
            report.idle_ms_per_s = await idle_phase(tree, options.idle)
            idle_to = await work.read()
            idle_seconds = time.perf_counter() - idle_began
            work_idle = idle_work_rates(idle_from, idle_to, idle_seconds, options.idle)
            click.echo(f"load: {options.concurrency} clients, {options.duration:g} s …", err=True)
            report.api, report.pipeline, report.cpu_gross_ms = await load_phase(
                client, customer, body, pool, tree, options, work, work_idle
            )
            orders = max(1, report.pipeline["orders"])
            seconds = report.pipeline["seconds"]
            report.cpu_per_order_ms = {
                part: max(0.0, used - report.idle_ms_per_s.get(part, 0.0) * seconds) / orders
                for part, used in report.cpu_gross_ms.items()
            }
            report.pipeline["cpu_ms_per_order_gross"] = round(
                sum(report.cpu_gross_ms.values()) / orders, 2
            )
            if options.sse_viewers:
                from devtools.bench_sse import sse_phase

                click.echo(f"sse: {options.sse_viewers} viewers …", err=True)
                report.sse = await sse_phase(client, customer, body, pool, tree, options)
            if options.sse_clients:
                from devtools.bench_sse import sse_orders_phase

                click.echo(
                    f"sse: {options.sse_clients} customers watching their own orders, "
                    f"{options.sse_rate:g} order events/s …",
                    err=True,
                )
                report.sse_orders = await sse_orders_phase(
                    client, customer, body, pool, tree, shop, options.sse_clients, options.sse_rate
                )
            if options.alone and tree is not None:
                click.echo("alone: placement with the relay and the workers paused …", err=True)
                report.alone = await alone_phase(
                    client, customer, body, pool, tree, options, report.idle_ms_per_s
                )
    finally:
        await pool.close()
    report.quiet_wait_s = await quiet_phase(tree, report.idle_ms_per_s)
    click.echo(f"raw: {options.concurrency} clients, {options.duration:g} s …", err=True)
    meter = CpuMeter(tree, report.idle_ms_per_s)
    report.raw = await bench_raw(
        dsn, raw_lines(body), options.concurrency, options.warmup, options.duration, meter
    )
    report.raw_cpu_ms = meter.per_unit(report.raw.completed)
    click.echo(
        f"raw, one statement: {options.concurrency} clients, {options.duration:g} s …", err=True
    )
    meter = CpuMeter(tree, report.idle_ms_per_s)
    report.raw_one = await bench_raw(
        dsn,
        raw_lines(body),
        options.concurrency,
        options.warmup,
        options.duration,
        meter,
        one_statement=True,
    )
    report.raw_one_cpu_ms = meter.per_unit(report.raw_one.completed)
    return report


# --------------------------------------------------------------------------- the table


def _priorities(niceness: dict[str, int], processes: dict[str, int]) -> list[str]:
    """One line: the parts' CPU priorities, grouped, with the processes of a part that
    runs more than one ("nice 0: web x2, sandbox; nice 10: …")."""
    if not niceness:
        return []
    by_nice: dict[int, list[str]] = {}
    for part, nice in sorted(niceness.items()):
        count = processes.get(part, 1)
        by_nice.setdefault(nice, []).append(f"{part} x{count}" if count > 1 else part)
    groups = "; ".join(f"nice {n}: {', '.join(parts)}" for n, parts in sorted(by_nice.items()))
    return [f"priority: {groups}"]


def table(report: Report, options: Options) -> str:
    data = report.as_json()
    lines = [
        f"machine: {data['machine']['cpus']} CPUs, {data['machine']['cpu_model']}, "
        f"load {data['machine']['load_avg_1m']} (1 min) before the raw run",
        *_priorities(data["shop"].get("niceness") or {}, data["shop"].get("processes") or {}),
        "",
        f"placement, {options.concurrency} concurrent clients, workers running",
    ]
    for label, unit, result in (
        ("  POST /api/orders", "orders/s", report.api),
        ("  raw asyncpg tx  ", "tx/s", report.raw),
        ("  raw, one stmt   ", "tx/s", report.raw_one),
    ):
        if result is not None:
            lines.append(
                f"{label} {result.rate:8.1f} {unit:<9} p50 {result.percentile(50):7.1f} ms  "
                f"p99 {result.percentile(99):7.1f} ms  errors {sum(result.errors.values())}"
            )
            lines.extend(f"      {n} x {why}" for why, n in result.errors.most_common(3))
    if split := report.pipeline.get("web_cpu_split_percent"):
        lines.append(
            f"  the web's CPU by process: {' / '.join(f'{p:g} %' for p in split)} "
            "(the kernel spreads connections, not requests)"
        )
    if shares_of_time := report.pipeline.get("web_time_percent"):
        lines.append(
            f"  the web ran {shares_of_time['ran']:g} % of the time and waited "
            f"{shares_of_time['waited_for_a_cpu']:g} % for a CPU (runnable, the cores busy)"
        )
    if report.quiet_wait_s:
        lines.append(f"  (the raw run waited {report.quiet_wait_s:g} s for the shop to go quiet)")
    if ratio := data["placement"]["ratio"]:
        lines.append(
            f"  api/raw           rate {ratio['rate']:.3f}   p50 {ratio['p50']:.1f}x   "
            f"p99 {ratio['p99']:.1f}x   (target: rate >= 0.35, p99 <= 5x)"
        )
    if ratio := data["placement"]["ratio_one_statement"]:
        lines.append(
            f"  api/raw-one       rate {ratio['rate']:.3f}   p50 {ratio['p50']:.1f}x   "
            f"p99 {ratio['p99']:.1f}x   (against the SQL the shop sends now)"
        )
    if report.raw_cpu_ms:
        lines.append(f"  one raw tx costs   {_cpu_sum(report.raw_cpu_ms)} ms of CPU")
    if report.raw_one_cpu_ms:
        lines.append(f"  one raw-one costs  {_cpu_sum(report.raw_one_cpu_ms)} ms of CPU")
    if alone := report.alone:
        lines += ["", *_alone_lines(alone, report)]
    if lone := report.lone:
        lines += [
            "",
            f"lone orders (n={lone['n']}, paid {lone['paid_n']})",
            f"  place -> paid       p50 {lone['place_to_paid_p50_ms']:7.1f} ms   "
            f"p99 {lone['place_to_paid_p99_ms']:7.1f} ms   (target: 80 / 200)",
            f"  place -> delivery   p50 {lone['place_to_delivery_p50_ms']:7.1f} ms   "
            f"p99 {lone['place_to_delivery_p99_ms']:7.1f} ms",
        ]
    if pipe := report.pipeline:
        lines += [
            "",
            f"through payment: {pipe['orders']} orders placed, {pipe['paid_with_delivery']} paid "
            f"with delivery, {pipe['failed']} failed, {pipe['unfinished']} unfinished",
            f"  {pipe['orders_per_s_through_payment']:.1f} orders/s over {pipe['seconds']} s; "
            f"backlog drained {pipe['drain_after_placement_s']} s after placing stopped "
            "(target: >= 100/s)",
        ]
        if backlog := pipe.get("backlog"):
            arrivals = (
                f"{pipe['arrival_rate']:g} orders a second arrive"
                if pipe.get("arrival_rate")
                else "placing back to back"
            )
            lines.append(
                f"  backlog while {arrivals}: at most {backlog['max']}, {backlog['last']} at "
                f"the end, growing {backlog['growth_per_s']:+.1f} orders/s "
                "(target: no backlog growing)"
            )
    if work := pipe.get("work_per_order"):
        lines.append(
            "  per order: "
            + ", ".join(f"{v:g} {k.replace('_', ' ')}" for k, v in work.items())
            + " (idle rates taken out)"
        )
    if report.cpu_per_order_ms:
        lines += [
            "",
            "CPU per order (ms), every process, idle cost taken out",
            f"  {'part':<16}{'per order':>10}{'idle ms/s':>11}",
        ]
        for part, ms in sorted(report.cpu_per_order_ms.items(), key=lambda kv: -kv[1]):
            idle = report.idle_ms_per_s.get(part, 0.0)
            lines.append(f"  {part:<16}{ms:>10.2f}{idle:>11.1f}")
        lines.append(
            f"  {'total':<16}{data['cpu_ms_per_order_total']:>10.2f}"
            f"{sum(report.idle_ms_per_s.values()):>11.1f}   (target: <= 30; gross "
            f"{pipe.get('cpu_ms_per_order_gross', 0):.1f}; bench client "
            f"{pipe.get('bench_client_cpu_ms_per_order', 0):.1f})"
        )
        if probes := data["cpu_per_order_in_probes"]:
            speed = pipe["speed_probe"]
            lines.append(
                f"  = {probes:.2f} speed probes (a fixed piece of Python work took "
                f"{speed['probe_ms_p50']:.3f} ms of CPU, p50 of {speed['samples']}, during the "
                "run: compare this across runs on a machine whose speed drifts)"
            )
    elif pipe:
        lines.append("  CPU not measured: no `pizzeria up` process found (PIZZERIA_DATA_DIR)")
    if sse := report.sse:
        lines += ["", "live updates (SSE)"]
        lines += [f"  {k}: {v}" for k, v in sse.items()]
    if many := report.sse_orders:
        lines += ["", *sse_orders_lines(many)]
    return "\n".join(lines)


def _cpu_sum(cpu: dict[str, float]) -> str:
    """ "web 3.41 + postgres 1.20 + bench client 0.45 = 5.06" (ms, largest first)."""
    return " + ".join(f"{part} {ms:.2f}" for part, ms in cpu.items()) + (
        f" = {sum(cpu.values()):.2f}"
    )


def _alone_lines(alone: dict[str, Any], report: Report) -> list[str]:
    """The placement-alone run, and the api/raw the CPU of each operation allows."""
    raw = report.raw
    lines = [
        f"placement alone: {', '.join(alone['paused'])} paused (SIGSTOP)",
        f"  POST /api/orders {alone['rate']:8.1f} orders/s  p50 {alone['p50_ms']:7.1f} ms  "
        f"p99 {alone['p99_ms']:7.1f} ms  errors {sum(alone['errors'].values())}"
        + (f"   api/raw {alone['rate'] / raw.rate:.3f}" if raw and raw.rate else ""),
        f"  one order costs   {_cpu_sum(alone['cpu_ms_per_order'])} ms of CPU",
    ]
    total, raw_total = alone["cpu_ms_per_order_total"], sum(report.raw_cpu_ms.values())
    if total and raw_total:
        lines.append(
            f"  raw tx CPU / placement CPU = {raw_total / total:.3f}: the api/raw of two runs "
            "that each use the whole machine"
        )
    return lines


def sse_orders_lines(s: dict[str, Any]) -> list[str]:
    """The many-orders SSE run as a few readable lines."""
    if "error" in s:
        return [f"live updates, many orders: not measured ({s['error']})"]
    return [
        f"live updates: {s['clients']} customers each watching its own order, one web process "
        f"({s['streams_open']} streams open, failed {s['streams_failed'] or 0}, "
        f"all open in {s['connect_all_s']} s)",
        f"  memory per idle stream  {s['kb_per_idle_stream']} KB (web RSS {s['web_rss_mb']} MB)"
        "   (target: <= 40 KB)",
        f"  order events            {s['events']} at {s['events_per_s_done']}/s "
        f"(asked {s['events_per_s_asked']:g}/s; skipped {s['events_skipped']}, "
        f"errors {s['event_errors'] or 0})",
        f"  commit -> frame         p50 {s['commit_to_frame_p50_ms']} ms   "
        f"p90 {s['commit_to_frame_p90_ms']} ms   p99 {s['commit_to_frame_p99_ms']} ms   "
        f"max {s['commit_to_frame_max_ms']} ms   missing {s['frames_missing']}"
        "   (target: p99 <= 100 ms)",
        f"    commit -> notified    p50 {s['commit_to_notified_p50_ms']} ms   "
        f"p99 {s['commit_to_notified_p99_ms']} ms   (the event source publishing)",
        f"    notified -> frame     p50 {s['notified_to_frame_p50_ms']} ms   "
        f"p99 {s['notified_to_frame_p99_ms']} ms   (the web: read, render, write)",
        f"  web CPU                 {s['web_cpu_percent']} % of a core, "
        f"{s['web_cpu_ms_per_event']} ms per event; runnable but waiting for a CPU "
        f"{s['web_waiting_for_cpu_percent']} % of the time",
        f"  bench client, same cores  streams {s['reader_cpu_percent']} % (own process, loop "
        f"lag p99 {s['reader_loop_lag_p99_ms']} ms, max {s['reader_loop_lag_max_ms']} ms), "
        f"event driver {s['driver_cpu_percent']} %; load average {s['load_avg_1m']}",
    ]


#: the figures ``--repeat`` gives the median and range of: (label, path in ``as_json``)
REPEATED_FIGURES = (
    ("api/raw, workers running", ("placement", "ratio", "rate")),
    ("POST /api/orders a second", ("placement", "api", "rate")),
    ("raw transactions a second", ("placement", "raw", "rate")),
    ("p99 / raw p99", ("placement", "ratio", "p99")),
    ("api/raw-one (one statement)", ("placement", "ratio_one_statement", "rate")),
    ("orders through payment a second", ("pipeline", "orders_per_s_through_payment")),
    ("CPU ms per order", ("cpu_ms_per_order_total",)),
)
#: those a run has only when it measured the shop's processes (without them, the CPU
#: per order is the bench's own)
FROM_THE_SHOP_S_PROCESSES = frozenset({"CPU ms per order"})


def repeat_summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median, lowest and highest of the key figures over runs of one tree on one shop
    (``as_json`` of each): on a machine whose speed and neighbours drift, api/raw moved
    from 0.19 to 0.28 between back-to-back runs of the same code (``perf31-ab-*``), so a
    change is judged by the median of several, not by one run."""
    summary = {}
    for label, path in REPEATED_FIGURES:
        values = []
        for run_json in runs:
            measured = run_json.get("shop", {}).get("processes_measured")
            if label in FROM_THE_SHOP_S_PROCESSES and not measured:
                continue
            value: Any = run_json
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, int | float):
                values.append(float(value))
        if values:
            summary[label] = {
                "median": round(statistics.median(values), 3),
                "low": min(values),
                "high": max(values),
                "runs": len(values),
            }
    return summary


def summary_table(summary: dict[str, dict[str, float]]) -> str:
    runs = max((figure["runs"] for figure in summary.values()), default=0)
    lines = [f"over {runs:g} runs: median (lowest to highest)"]
    lines += [
        f"  {label:<34} {f['median']:>9g}   ({f['low']:g} to {f['high']:g})"
        for label, f in summary.items()
    ]
    return "\n".join(lines)


def write_json(report: Report | list[Report], path: str) -> None:
    """One run's figures; for several (``--repeat``), each run's and their summary."""
    if isinstance(report, list):
        runs = [each.as_json() for each in report]
        data: dict[str, Any] = {"runs": runs, "summary": repeat_summary(runs)}
    else:
        data = report.as_json()
    text = json.dumps(data, indent=2)
    if path == "-":
        click.echo(text)
    else:
        with open(path, "w", encoding="utf-8") as out:
            out.write(text + "\n")
