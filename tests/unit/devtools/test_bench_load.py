"""The bench's load run: orders at a steady arrival rate (``--rate``), the backlog
figures that say whether the shop kept up, and the CPU one operation costs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable

import click
import psutil
import pytest

from devtools.bench import run_load
from devtools.bench_cpu import CpuMeter, ProcessTree, part_name, shares
from devtools.bench_run import (
    QUIET_LOOK_S,
    _background,
    backlog_figures,
    idle_work_rates,
    per_unit,
    quiet_phase,
    require_one_web_process,
)
from devtools.bench_shop import shop_env


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


class _Clock:
    """A meter that notes when it was started and stopped."""

    def __init__(self) -> None:
        self.started = self.stopped = 0.0

    def start(self) -> None:
        self.started = time.perf_counter()

    def stop(self) -> None:
        self.stopped = time.perf_counter()


async def test_the_meter_spans_every_operation_it_is_divided_by() -> None:
    ends: list[float] = []

    async def operation() -> str | None:
        await asyncio.sleep(0.01)
        ends.append(time.perf_counter())
        return None

    clock = _Clock()
    began = time.perf_counter()
    result = await run_load(operation, concurrency=2, warmup=0.1, duration=0.1, meter=clock)

    assert began <= clock.started < min(ends) and clock.stopped >= max(ends)
    assert result.completed == len(ends), "the warm-up's operations are in the meter's CPU"
    assert result.completed > len(result.latencies) > 0


#: a "shop": a web part and a worker part, both asleep, children of one launcher
_WEB_AND_WORKER = """
import subprocess, sys, time
sleep = "import time\\ntime.sleep(60)"
for part in (["serve"], ["worker", "payment"]):
    subprocess.Popen([sys.executable, "-c", sleep, "app.cli", *part])
time.sleep(60)
"""


@contextlib.asynccontextmanager
async def _fake_shop(code: str) -> AsyncIterator[ProcessTree]:
    """A launcher running ``code`` (which starts two parts), as a process tree once both
    run as parts (a fixed half second was too short on a busy machine); killed with all
    its parts after."""
    root = await asyncio.create_subprocess_exec(sys.executable, "-c", code, start_new_session=True)
    try:
        tree = ProcessTree(root.pid)
        deadline = time.monotonic() + 20
        while sum(n for part, n in tree.processes().items() if "python" not in part) < 2:
            # a child not yet past its exec still looks like the launcher's own python
            assert time.monotonic() < deadline, f"the parts never started: {tree.processes()}"
            await asyncio.sleep(0.05)
        yield tree
    finally:
        os.killpg(root.pid, signal.SIGKILL)
        await root.wait()


async def test_placement_alone_pauses_the_workers_and_lets_them_go_on() -> None:
    async with _fake_shop(_WEB_AND_WORKER) as tree:
        assert set(tree.niceness()) == {"web", "worker-payment"}
        stopped = tree.pause(_background)
        # SIGSTOP takes effect when the kernel next runs the process, which may be on the
        # other core, still running, for a moment after the signal was sent
        states = await _states_once(tree, lambda s: s["worker-payment"] == psutil.STATUS_STOPPED)
        assert states["worker-payment"] == psutil.STATUS_STOPPED
        assert states["web"] != psutil.STATUS_STOPPED, "placement's own parts keep running"
        tree.resume(stopped)
        states = await _states_once(tree, lambda s: psutil.STATUS_STOPPED not in s.values())
        assert psutil.STATUS_STOPPED not in states.values(), states


async def _states_once(
    tree: ProcessTree, settled: Callable[[dict[str, str]], bool], timeout: float = 5.0
) -> dict[str, str]:
    """Each part's process state, once ``settled`` holds for them (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        states = {part_name(p): p.status() for p in tree.root.children()}
        if settled(states) or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.01)


def test_cpu_meter_gives_each_part_its_cpu_above_idle_per_unit() -> None:
    meter = CpuMeter(tree=None, idle_ms_per_s={})
    meter.start()
    spin_until = time.process_time() + 0.05
    while time.process_time() < spin_until:
        pass
    meter.stop()

    per_order = meter.per_unit(10)
    assert list(per_order) == ["bench client"], "no shop measured: the bench's own CPU only"
    assert 4.0 <= per_order["bench client"] <= 8.0, "50 ms spun, over 10 units"


def test_the_web_s_cpu_is_shared_out_by_process_largest_first() -> None:
    assert shares({1: 1.0, 2: 1.0}, {1: 1.3, 2: 2.0}) == [76.9, 23.1]
    assert shares({1: 1.0}, {1: 2.0}) == [], "one process: nothing to compare"
    assert shares({1: 1.0, 2: 1.0}, {1: 1.0, 2: 1.0}) == [], "nothing spent"
    assert shares({1: 1.0}, {1: 2.0, 3: 0.5}) == [], "a process that came later is left out"


#: a "shop" with two web replicas: one spins for 3 s of CPU, the other sleeps
_TWO_WEBS = """
import subprocess, sys, time
spin = "import time\\nend = time.process_time() + 3\\nwhile time.process_time() < end: pass\\n"
spin += "time.sleep(60)"
sleep = "import time\\ntime.sleep(60)"
for code in (spin, sleep):
    subprocess.Popen([sys.executable, "-c", code, "app.cli", "serve"])
time.sleep(60)
"""


async def test_the_tree_measures_each_web_replica_on_its_own() -> None:
    async with _fake_shop(_TWO_WEBS) as tree:
        before = tree.cpu_by_process("web")
        assert len(before) == 2 and tree.processes() == {"web": 2}
        await asyncio.sleep(1.5)
        busy, idle = shares(before, tree.cpu_by_process("web"))
        assert busy > 80 > 20 > idle


def test_the_bench_s_own_shop_runs_one_web_process_when_it_measures_live_updates() -> None:
    """``pizzeria up`` starts one web process per CPU (at most two); the live-update
    figures are one process's, so the bench's shop for them has one."""
    assert shop_env(live_updates=True)["PIZZERIA_WEB_REPLICAS"] == "1"
    assert "PIZZERIA_WEB_REPLICAS" not in shop_env(live_updates=False)
    assert shop_env(live_updates=False)["SANDBOX_COURIER_AUTOPILOT"] == "0"


def test_live_updates_are_not_measured_on_a_shop_with_several_web_processes() -> None:
    require_one_web_process({"web": 1, "relay": 1})
    require_one_web_process({})  # processes not measured: nothing to say
    with pytest.raises(click.ClickException, match="PIZZERIA_WEB_REPLICAS=1"):
        require_one_web_process({"web": 2, "relay": 1})


def test_idle_work_is_taken_out_only_when_it_was_measured() -> None:
    before = {"pg_transactions": 100.0, "redis_commands": 1_000.0}
    after = {"pg_transactions": 111.0, "redis_commands": 1_031.0}
    # ten transactions and thirty commands a second, the readings' own ones left out
    assert idle_work_rates(before, after, 1.0, idle=1.0) == {
        "pg_transactions": 10.0,
        "redis_commands": 30.0,
    }
    # no idle phase: the readings a few ms apart are no rate (it came out as 500 INFO a
    # second, and the load's Redis commands per order as 0)
    assert idle_work_rates(before, after, 0.002, idle=0.0) == {}
    load = per_unit(
        {"redis_commands": 0.0}, {"redis_commands": 3_000.0}, {}, 30.0, own=0, units=100
    )
    assert load == {"redis_commands": 30.0}


def test_a_shop_stopped_under_the_run_is_said_plainly() -> None:
    """An operator's Ctrl-C on the shop while the bench reads its processes: one line
    saying so (a ClickException), not psutil's NoSuchProcess traceback."""
    shop = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    tree = ProcessTree(shop.pid)
    assert "launcher" in tree.snapshot().cpu
    shop.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        shop.wait(0.01)  # dead, and (most likely) not reaped yet: the bench's own shop
    with pytest.raises(click.ClickException, match="stopped during the run"):
        tree.snapshot()
    shop.wait()
    with pytest.raises(click.ClickException, match="stopped during the run"):
        tree.snapshot()  # reaped: gone
