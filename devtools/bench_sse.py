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
import time
import uuid
from typing import Any

import httpx

from devtools.bench import ApiCustomer, place_one
from devtools.bench_cpu import ProcessTree

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
