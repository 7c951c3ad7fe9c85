"""Live updates under the bench: many viewers of one order on one web process.

Each round places an order, waits until it is paid, opens ``viewers`` streams of
``GET /api/orders/{id}/events`` (all as its customer, as many tabs and devices would),
waits until every stream has its first frame, then cancels the order. Measured:

- memory per idle stream: the web process's resident memory before and after the
  streams opened, divided by their number;
- change -> frame: from the moment the cancel is asked for until each stream receives
  the first frame with a newer view version (the answer itself can come after the frames:
  the same process projects, publishes and fans out before it answers);
- web CPU per change: what the web process spent from the cancel until every stream had
  its frame (one view read and render per viewer, or one per process).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import multiprocessing
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from devtools.bench import ApiCustomer, place_one
from devtools.bench_cpu import ProcessTree, process_cpu_seconds, scheduled
from devtools.bench_shop import Shop

PAID_STATUS = "SELECT doc->>'status' FROM status.order_views WHERE order_id = $1"


class Viewer:
    """One SSE stream: the time each view version arrived."""

    def __init__(self) -> None:
        self.versions: dict[int, float] = {}
        self.changed = asyncio.Event()

    async def watch(self, client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
        async with client.stream("GET", path, headers=headers) as response:
            async for line in response.aiter_lines():
                if line.startswith("id:"):
                    with contextlib.suppress(ValueError):
                        self.versions.setdefault(int(line[3:].strip()), time.perf_counter())
                        self.changed.set()

    def first_after(self, version: int) -> float | None:
        later = [t for v, t in self.versions.items() if v > version]
        return min(later) if later else None


async def _wait(condition: Any, within: float) -> bool:
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return False


async def _paid_order(
    client: httpx.AsyncClient, customer: ApiCustomer, body: dict[str, Any], pool: Any
) -> str | None:
    order_id, _ = await place_one(client, customer, body)
    if order_id is None:
        return None
    if await _wait_status(pool, order_id, "paid"):
        return order_id
    return None


async def _wait_status(pool: Any, order_id: str, status: str) -> bool:
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        if await pool.fetchval(PAID_STATUS, uuid.UUID(order_id)) == status:
            return True
        await asyncio.sleep(0.05)
    return False


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


async def sse_phase(
    client: httpx.AsyncClient,
    customer: ApiCustomer,
    body: dict[str, Any],
    pool: Any,
    tree: ProcessTree | None,
    options: Any,
    rounds: int = 3,
) -> dict[str, Any]:
    viewers_n = options.sse_viewers
    web_pid = tree.part_pid("web") if tree else None
    latencies: list[float] = []
    kb_per_stream: list[float] = []
    web_cpu_ms: list[float] = []
    answers: list[float] = []
    missing = 0
    limits = httpx.Limits(max_connections=viewers_n + 8, max_keepalive_connections=0)
    timeout = httpx.Timeout(60.0, read=None)
    async with httpx.AsyncClient(
        base_url=str(client.base_url), limits=limits, timeout=timeout
    ) as streams:
        for _ in range(rounds):
            order_id = await _paid_order(client, customer, body, pool)
            if order_id is None:
                continue
            await asyncio.sleep(0.5)  # the delivery's events land too
            rss_before = _rss(web_pid)
            viewers = [Viewer() for _ in range(viewers_n)]
            path = f"/api/orders/{order_id}/events"
            tasks = [
                asyncio.create_task(v.watch(streams, path, dict(customer.headers))) for v in viewers
            ]
            try:
                await _wait(lambda vs=viewers: all(v.versions for v in vs), 120)
                await asyncio.sleep(1.0)  # every stream idle
                if rss_before and (rss_after := _rss(web_pid)):
                    kb_per_stream.append((rss_after - rss_before) / 1024 / viewers_n)
                seen = max((max(v.versions) for v in viewers if v.versions), default=0)
                cpu_before = tree.snapshot().cpu.get("web", 0.0) if tree else 0.0
                sent = time.perf_counter()
                response = await client.post(
                    f"/api/orders/{order_id}/cancel", headers=customer.headers
                )
                answers.append((time.perf_counter() - sent) * 1000)
                if response.status_code != 200:
                    continue
                await _wait(lambda vs=viewers, s=seen: all(v.first_after(s) for v in vs), 30)
                if tree:
                    web_cpu_ms.append((tree.snapshot().cpu.get("web", 0.0) - cpu_before) * 1000)
                for viewer in viewers:
                    arrived = viewer.first_after(seen)
                    if arrived is None:
                        missing += 1
                    else:
                        latencies.append((arrived - sent) * 1000)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(1.0)
    return {
        "viewers_of_one_order": viewers_n,
        "rounds": rounds,
        # from the moment the change (a cancel) is asked for: an upper bound of commit ->
        # frame (the web answers only after committing, projecting and publishing)
        "change_to_frame_p50_ms": round(_pct(latencies, 50), 1),
        "change_to_frame_p99_ms": round(_pct(latencies, 99), 1),
        "change_answered_p50_ms": round(_pct(answers, 50), 1),
        "frames_missing": missing,
        "kb_per_idle_stream": round(sum(kb_per_stream) / len(kb_per_stream), 1)
        if kb_per_stream
        else None,
        "web_cpu_ms_per_change": round(sum(web_cpu_ms) / len(web_cpu_ms), 1)
        if web_cpu_ms
        else None,
    }


def _rss(pid: int | None) -> int | None:
    if pid is None:
        return None
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


# --------------------------------------------------------------------------- many orders
#
# ``--sse-clients N --sse-rate R``: N customers, each watching its own order, on ONE web
# process, while order events happen at R per second:
#
# - set-up, cheap and outside the measurement: one real order is placed and paid through
#   the API; its rows (account, order, lines, payment, delivery, order view, board card)
#   are copied N times in PostgreSQL with fresh ids. Each copy's customer gets a real
#   bearer token, issued with the shop's own secret by ``issue_token``, so the web does
#   its usual auth work (token, account standing read) for every stream;
# - memory per idle stream: the web's resident memory before and after the N streams
#   opened and went quiet, divided by N;
# - events: a staff kitchen move (``delivery.service.advance``, then ``undo_last_move``
#   back) on one order after another, through the real use case in this process: state
#   machine, outbox, projection in the same transaction, commit, Redis ``PUBLISH``; the
#   shop's own relay and status worker then see the same events from the outbox, as they
#   would for a move made on the staff board;
# - commit -> frame: from the first publish after the commit (the use case's ``complete``
#   commits, then publishes) until the order's stream receives a frame with a newer view
#   version; and the web's CPU per event over the driving window.
#
# The client is lean (raw asyncio streams, one task per stream) but shares the machine's
# two cores with the shop; its CPU is reported next to the web's.

CLONED = (
    # (table, column that names the original, key into the original's ids)
    ("accounts.users", "id", "customer"),
    ("ordering.orders", "id", "order"),
    ("ordering.order_lines", "order_id", "order"),
    ("payment.payments", "order_id", "order"),
    ("delivery.deliveries", "order_id", "order"),
    ("status.order_views", "order_id", "order"),
    ("status.board_cards", "delivery_id", "delivery"),
)
DELIVERY_OF = "SELECT id FROM delivery.deliveries WHERE order_id = $1"
USER_OF = "SELECT customer_id FROM ordering.orders WHERE id = $1"
#: a kitchen move may be undone this long after it was made (the shop allows 30 s)
UNDO_WITHIN = 25.0


@dataclass
class Watched:
    """One customer's stream of its own order: frames (view version, arrival time)."""

    order_id: uuid.UUID
    delivery_id: uuid.UUID
    token: str
    frames: list[tuple[int, float]] = field(default_factory=list)
    failed: str | None = None
    #: the kitchen stage the bench last moved it to, and when
    stage: str = "queued"
    moved_at: float = 0.0
    busy: bool = False

    @property
    def version(self) -> int:
        return self.frames[-1][0] if self.frames else 0

    def first_after(self, version: int) -> float | None:
        return next((at for v, at in self.frames if v > version), None)


async def _clone_orders(pool: Any, order_id: str, count: int) -> list[tuple[uuid.UUID, ...]]:
    """``count`` copies of a paid order with its delivery, each with its own customer:
    [(customer, order, delivery)]. Every id in the copied rows (and inside their JSON)
    is replaced; the e-mail gets a fresh local part."""
    original = uuid.UUID(order_id)
    customer = await pool.fetchval(USER_OF, original)
    delivery = await pool.fetchval(DELIVERY_OF, original)
    if customer is None or delivery is None:
        raise RuntimeError("the template order has no delivery yet")
    ids = {"customer": customer, "order": original, "delivery": delivery}
    sources = {
        table: await pool.fetch(f"SELECT * FROM {table} WHERE {column} = $1", ids[key])
        for table, column, key in CLONED
    }
    made: list[tuple[uuid.UUID, ...]] = []
    rows_by_table: dict[str, list[tuple[Any, ...]]] = {table: [] for table, _, _ in CLONED}
    for _ in range(count):
        fresh: dict[Any, Any] = {old: uuid.uuid4() for old in ids.values()}
        for rows in sources.values():
            for row in rows:
                if isinstance(row.get("id"), uuid.UUID) and row["id"] not in fresh:
                    fresh[row["id"]] = uuid.uuid4()
        texts = {str(old): str(new) for old, new in fresh.items()}
        for table, rows in sources.items():
            for row in rows:
                rows_by_table[table].append(tuple(_swap(v, fresh, texts) for v in row.values()))
        made.append((fresh[customer], fresh[original], fresh[delivery]))
    async with pool.acquire() as conn, conn.transaction():
        for table, rows in sources.items():
            if not rows:
                continue
            columns = list(rows[0].keys())
            values = ", ".join(f"${i + 1}" for i in range(len(columns)))
            await conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})",
                rows_by_table[table],
            )
    return made


def _swap(value: Any, fresh: dict[Any, Any], texts: dict[str, str]) -> Any:
    if isinstance(value, uuid.UUID):
        return fresh.get(value, value)
    if isinstance(value, str):
        for old, new in texts.items():
            value = value.replace(old, new)
        if "@" in value and " " not in value and len(value) < 254:  # the account's e-mail
            value = f"sse-{uuid.uuid4().hex[:12]}-{value}"
    return value


def _shop_settings(data_dir: Path | None) -> Any:
    """This shop's settings as far as issuing tokens goes: its secret from the data
    folder's ``secrets.env`` (``pizzeria up`` made it), else the environment's."""
    from app.platform.settings import get_settings

    settings = get_settings()
    path = data_dir / "secrets.env" if data_dir else None
    if path and path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, _, value = line.partition("=")
            if name.strip() == "SECRET_KEY" and value.strip():
                security = replace(settings.security, secret_key=value.strip())
                return replace(settings, security=security)
    return settings


async def _stream(host: str, port: int, watched: Watched, opened: asyncio.Event) -> None:
    """One ``GET /api/orders/{id}/events`` over a raw socket: the status line and headers,
    then every ``id:`` line is a frame (chunk sizes and data lines are skipped)."""
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            (
                f"GET /api/orders/{watched.order_id}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {watched.token}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        status = (await reader.readline()).split()
        if len(status) < 2 or status[1] != b"200":
            watched.failed = (b" ".join(status[1:]) or b"closed").decode(errors="replace")
            return
        while (await reader.readline()).strip():
            pass  # headers
        while line := await reader.readline():
            if line.startswith(b"id:"):
                watched.frames.append((int(line[3:].strip()), time.perf_counter()))
                opened.set()
        watched.failed = watched.failed or "closed by the server"
    except (OSError, ValueError) as exc:
        watched.failed = f"{type(exc).__name__}: {exc}"[:120]
    finally:
        opened.set()
        if writer is not None:
            writer.close()


def reader_process(conn: Any, url: str, redis_url: str, streams: list[tuple[str, str]]) -> None:
    """The streams, in a process of their own (``multiprocessing``, spawned), so that
    the event driver's work never delays a frame's timestamp (``perf_counter`` is the
    machine's monotonic clock, the same in both processes). Tells the bench
    ``("open", {order: (first version, why it failed)})``, then on ``"stop"`` answers
    ``("frames", {order: [(version, at)]}, cpu seconds, loop lag p99/max ms)``."""
    raise_fd_limit(len(streams) + 256)
    asyncio.run(_read_streams(conn, httpx.URL(url), redis_url, streams))


async def _notifications(redis_url: str, into: dict[str, list[float]]) -> None:
    """When each ``order:<id>`` notification reached a subscriber (as the web's does)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        async with redis.pubsub() as pubsub:
            await pubsub.psubscribe("order:*")
            async for message in pubsub.listen():
                if message["type"] == "pmessage":
                    channel = message["channel"]
                    channel = channel.decode() if isinstance(channel, bytes) else str(channel)
                    into.setdefault(channel.removeprefix("order:"), []).append(time.perf_counter())
    finally:
        await redis.aclose()


async def _read_streams(
    conn: Any, url: httpx.URL, redis_url: str, streams: list[tuple[str, str]]
) -> None:
    host, port = url.host, url.port or 80
    notified: dict[str, list[float]] = {}
    listener = asyncio.create_task(_notifications(redis_url, notified))
    watched = [Watched(uuid.UUID(order), uuid.UUID(int=0), token) for order, token in streams]
    tasks: list[asyncio.Task[None]] = []
    for batch in range(0, len(watched), 50):  # connect 50 at a time, like a busy evening
        opened = [asyncio.Event() for _ in watched[batch : batch + 50]]
        tasks += [
            asyncio.create_task(_stream(host, port, w, o))
            for w, o in zip(watched[batch : batch + 50], opened, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(o.wait() for o in opened)), 120)
    conn.send(("open", {str(w.order_id): (w.version, w.failed) for w in watched}))
    lags: list[float] = []

    async def lag() -> None:  # how late this loop wakes up: the client's own health
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - asked - 0.01) * 1000)

    lag_task = asyncio.create_task(lag())
    cpu = process_cpu_seconds()
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
    lag_task.cancel()
    cpu = process_cpu_seconds() - cpu
    for task in tasks:
        task.cancel()
    listener.cancel()
    await asyncio.gather(*tasks, lag_task, listener, return_exceptions=True)
    frames = {str(w.order_id): w.frames for w in watched}
    conn.send(("frames", frames, notified, cpu, _pct(lags, 99), _pct(lags, 100)))


class EventDriver:
    """Kitchen moves through the real use case, with the commit instant of each: the
    session factory projects in the transaction and publishes after the commit, exactly
    as the web's does (``read_your_writes``); the publish stamps the time."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        from redis.asyncio import Redis
        from sqlalchemy.ext.asyncio import create_async_engine

        import app.models  # noqa: F401  (every mapper, for the use cases' relationships)
        from app.platform.db import create_session_factory
        from app.platform.uow import read_your_writes
        from app.status.service import project_in_transaction

        self.engine = create_async_engine(database_url, pool_size=10, max_overflow=10)
        self.redis = Redis.from_url(redis_url)
        self.factory = create_session_factory(self.engine)
        self._stamp: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
            "bench_commit", default=None
        )
        read_your_writes(self.factory, project_in_transaction, self._publish)

    async def _publish(self, told: Sequence[tuple[str, str]]) -> Any:
        stamps = self._stamp.get()
        if stamps is not None and not stamps:
            stamps.append(time.perf_counter())
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, event_type in told:
                pipe.publish(channel, event_type)
            return await pipe.execute()

    async def move(self, watched: Watched) -> float:
        """One kitchen move (forward, or back within the undo window); the commit instant."""
        from app.delivery import service as delivery

        stamps: list[float] = []
        self._stamp.set(stamps)
        now = time.perf_counter()
        async with self.factory() as session:
            if watched.stage == "preparing" and now - watched.moved_at < UNDO_WITHIN:
                await delivery.undo_last_move(session, watched.delivery_id)
                watched.stage = "queued"
            else:
                moved = await delivery.advance(session, watched.delivery_id, watched.stage)
                watched.stage = str(moved.status)
        watched.moved_at = now
        if not stamps:
            raise RuntimeError("the move published nothing")
        return stamps[0]

    async def close(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()


def raise_fd_limit(wanted: int) -> int:
    """Open file limit up to the hard limit (the shop started by the bench inherits it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def _run_queue_seconds(pid: int | None) -> float | None:
    """How long the process's main thread has waited, runnable, for a CPU."""
    times = scheduled(pid) if pid is not None else None
    return times[1] if times else None


def _cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


async def sse_orders_phase(
    client: httpx.AsyncClient,
    customer: ApiCustomer,
    body: dict[str, Any],
    pool: Any,
    tree: ProcessTree | None,
    shop: Shop,
    clients: int,
    rate: float,
    seconds: float = 20.0,
) -> dict[str, Any]:
    from app.platform.security import Principal, issue_token

    if not (shop.database_url and shop.redis_url):
        return {"error": "needs the shop's database and Redis"}
    web_pid = tree.part_pid("web") if tree else None
    template = await _paid_order(client, customer, body, pool)
    if template is None:
        return {"error": "the template order was not paid"}
    if not await _wait_delivery(pool, template):
        return {"error": "the template order got no delivery"}
    made = await _clone_orders(pool, template, clients)
    settings = _shop_settings(shop.data_dir)
    watched = [
        Watched(order, delivery_id, issue_token(settings, Principal(cust, "customer"))[0])
        for cust, order, delivery_id in made
    ]
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    streams = [(str(w.order_id), w.token) for w in watched]
    by_order = {str(w.order_id): w for w in watched}
    driver = EventDriver(shop.database_url, shop.redis_url)
    await asyncio.sleep(1.0)
    rss_before = _rss(web_pid)
    began = time.perf_counter()
    reader = ctx.Process(
        target=reader_process, args=(child, shop.url, shop.redis_url, streams), daemon=True
    )
    reader.start()
    loop = asyncio.get_running_loop()
    try:
        _, opened = await loop.run_in_executor(None, parent.recv)
        connect_s = time.perf_counter() - began
        for order, (version, why) in opened.items():
            by_order[order].frames = [(version, 0.0)] if version else []
            by_order[order].failed = why
        failed = Counter(w.failed for w in watched if w.failed)
        live = [w for w in watched if not w.failed and w.frames]
        await asyncio.sleep(3.0)  # every stream idle
        rss_after = _rss(web_pid)
        kb_per_idle = (
            (rss_after - rss_before) / 1024 / max(1, len(live))
            if rss_before and rss_after
            else None
        )
        # events at ``rate`` per second, one order after another; the version each
        # order's view had before its move (every move adds one)
        events: list[tuple[Watched, int, float]] = []
        moves: Counter[uuid.UUID] = Counter()
        errors: Counter[str] = Counter()
        pending: set[asyncio.Task[None]] = set()

        async def one(w: Watched) -> None:
            w.busy = True
            seen = w.version + moves[w.order_id]
            try:
                events.append((w, seen, await driver.move(w)))
                moves[w.order_id] += 1
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
            finally:
                w.busy = False

        cpu_before, driver_before = _cpu_seconds(web_pid), process_cpu_seconds()
        waited_before = _run_queue_seconds(web_pid)
        drive_began, drive_began_at = time.perf_counter(), time.time()
        total = int(rate * seconds)
        skipped = 0
        for k in range(total):
            await asyncio.sleep(max(0.0, drive_began + k / rate - time.perf_counter()))
            w = live[k % len(live)] if live else None
            if w is None or w.busy:
                skipped += 1
                continue
            task = asyncio.create_task(one(w))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending, timeout=30)
        drive_s = time.perf_counter() - drive_began
        await asyncio.sleep(3.0)  # the last frames arrive
        settled_s = time.perf_counter() - drive_began
        cpu_after, driver_after = _cpu_seconds(web_pid), process_cpu_seconds()
        waited_after = _run_queue_seconds(web_pid)
        waited = (
            waited_after - waited_before
            if waited_before is not None and waited_after is not None
            else None
        )
        parent.send("stop")
        answer = await loop.run_in_executor(None, parent.recv)
        _, frames, notified, reader_cpu, lag_p99, lag_max = answer
        for order, got in frames.items():
            by_order[order].frames = [tuple(f) for f in got]
        latencies, to_redis, to_frame, timeline, missing = [], [], [], [], 0
        for w, seen, committed in events:
            arrived = w.first_after(seen)
            if arrived is None:
                missing += 1
                continue
            latencies.append((arrived - committed) * 1000)
            timeline.append((round(committed - drive_began, 2), round(latencies[-1], 1)))
            told = [t for t in notified.get(str(w.order_id), []) if t >= committed]
            if told:
                to_redis.append((told[0] - committed) * 1000)
                to_frame.append((arrived - told[0]) * 1000)
        web_cpu = (cpu_after - cpu_before) if cpu_before is not None and cpu_after else None
        return {
            "clients": clients,
            "streams_open": len(live),
            "streams_failed": dict(failed.most_common(3)),
            "connect_all_s": round(connect_s, 1),
            "kb_per_idle_stream": round(kb_per_idle, 1) if kb_per_idle is not None else None,
            "web_rss_mb": round(rss_after / 2**20, 1) if rss_after else None,
            "events_per_s_asked": rate,
            "events": len(events),
            "events_per_s_done": round(len(events) / drive_s, 1),
            "events_skipped": skipped,
            "event_errors": dict(errors.most_common(3)),
            "commit_to_frame_p50_ms": round(_pct(latencies, 50), 1),
            "commit_to_frame_p90_ms": round(_pct(latencies, 90), 1),
            "commit_to_frame_p99_ms": round(_pct(latencies, 99), 1),
            "commit_to_frame_max_ms": round(_pct(latencies, 100), 1),
            "frames_missing": missing,
            # the two halves: the first publish after the commit reaching a subscriber
            # (the event source's side), and from there to the frame (the web's side)
            "commit_to_notified_p50_ms": round(_pct(to_redis, 50), 1),
            "commit_to_notified_p99_ms": round(_pct(to_redis, 99), 1),
            "notified_to_frame_p50_ms": round(_pct(to_frame, 50), 1),
            "notified_to_frame_p99_ms": round(_pct(to_frame, 99), 1),
            "latency_by_second": _by_second(timeline),
            # wall clock when the events began: to line the run up with the shop's logs
            "events_began_at": round(drive_began_at, 3),
            "web_cpu_percent": round(web_cpu * 100 / settled_s, 1) if web_cpu else None,
            "web_cpu_ms_per_event": round(web_cpu * 1000 / max(1, len(events)), 2)
            if web_cpu
            else None,
            # the web runnable but without a CPU (other processes had both cores)
            "web_waiting_for_cpu_percent": round(waited * 100 / settled_s, 1)
            if waited is not None
            else None,
            "driver_cpu_percent": round((driver_after - driver_before) * 100 / settled_s, 1),
            "reader_cpu_percent": round(reader_cpu * 100 / settled_s, 1),
            "reader_loop_lag_p99_ms": round(lag_p99, 1),
            "reader_loop_lag_max_ms": round(lag_max, 1),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        with contextlib.suppress(OSError, ValueError):
            parent.send("stop")
        reader.join(timeout=10)
        if reader.is_alive():
            reader.kill()
        await driver.close()


def _by_second(timeline: list[tuple[float, float]]) -> dict[int, float]:
    """The worst commit -> frame (ms) of the events committed in each second of the run:
    a backlog that grows shows as a rising line."""
    worst: dict[int, float] = {}
    for at, ms in timeline:
        worst[int(at)] = max(worst.get(int(at), 0.0), ms)
    return dict(sorted(worst.items()))


async def _wait_delivery(pool: Any, order_id: str) -> bool:
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        if await pool.fetchval(DELIVERY_OF, uuid.UUID(order_id)) is not None:
            await asyncio.sleep(1.0)  # its board card and view land too
            return True
        await asyncio.sleep(0.1)
    return False
