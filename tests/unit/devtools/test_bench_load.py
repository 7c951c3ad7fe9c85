"""The bench's load run: orders at a steady arrival rate (``--rate``), and the backlog
figures that say whether the shop kept up."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from devtools.bench import run_load
from devtools.bench_cpu import ProcessTree
from devtools.bench_run import QUIET_LOOK_S, backlog_figures, quiet_phase


async def test_a_steady_rate_starts_each_operation_on_its_slot_and_never_early() -> None:
    starts: list[float] = []

    async def operation() -> str | None:
        starts.append(time.perf_counter())
        return None

    began = time.perf_counter()
    result = await run_load(operation, concurrency=4, warmup=0.0, duration=0.3, rate=20)

    assert 1 <= len(starts) <= 6, "20 a second for 0.3 s: six slots, none added"
    for slot, started in enumerate(sorted(starts)):
        assert started >= began + slot / 20 - 0.005, f"slot {slot} started early"
    assert len(result.latencies) == len(starts)


async def test_back_to_back_runs_as_many_as_the_clients_manage() -> None:
    calls = 0

    async def operation() -> str | None:
        nonlocal calls
        calls += 1
        return None if calls % 2 else "HTTP 503"

    result = await run_load(operation, concurrency=2, warmup=0.0, duration=0.05)

    assert calls > 6, "no schedule: the next starts as soon as one ends"
    assert sum(result.errors.values()) == calls // 2


def test_a_backlog_that_grows_and_one_that_does_not() -> None:
    growing = [(t / 2, 10 * t) for t in range(1, 21)]  # +10 orders every 0.5 s
    assert backlog_figures(growing, warmup=2.0)["growth_per_s"] == 20.0
    flat = [(t / 2, 30 + (t % 2)) for t in range(1, 21)]
    figures = backlog_figures(flat, warmup=2.0)
    assert abs(figures["growth_per_s"]) < 0.5
    assert figures["max"] == 31 and figures["last"] == 30
    assert backlog_figures([(0.5, 3)], warmup=0.0) == {}, "one look says nothing"


#: a "shop" whose one part spins for 1.5 s, then sleeps
_BUSY_THEN_IDLE = """
import subprocess, sys, time
spin = "import time\\nt = time.time()\\nwhile time.time() - t < 1.5: pass\\ntime.sleep(60)"
subprocess.Popen([sys.executable, "-c", spin])
time.sleep(60)
"""


async def test_the_raw_run_waits_for_a_busy_shop_to_go_quiet() -> None:
    root = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _BUSY_THEN_IDLE, start_new_session=True
    )
    try:
        await asyncio.sleep(0.3)  # the part is spinning
        tree = ProcessTree(root.pid)
        waited = await quiet_phase(tree, {})
        assert QUIET_LOOK_S < waited < 5, "busy at the first look, quiet once it sleeps"
        assert await quiet_phase(tree, {}) < 2 * QUIET_LOOK_S, "quiet: one look"
    finally:
        os.killpg(root.pid, signal.SIGKILL)
        await root.wait()
