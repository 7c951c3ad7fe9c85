"""The bench says at what CPU priority each part of the shop ran: a rush measured with the
workers yielding to the web is not comparable with one measured without."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from devtools.bench_cpu import ProcessTree, part_name
from devtools.bench_run import _priorities, _time_shares


def test_the_parts_are_grouped_by_their_niceness() -> None:
    niceness = {"web": 0, "worker-payment": 10, "relay": 10, "sandbox": 0}
    assert _priorities(niceness, {"web": 1}) == [
        "priority: nice 0: sandbox, web; nice 10: relay, worker-payment"
    ]
    assert _priorities({}, {}) == []


def test_a_part_with_several_processes_says_how_many() -> None:
    niceness = {"web": 0, "worker-payment": 10}
    assert _priorities(niceness, {"web": 2, "worker-payment": 1}) == [
        "priority: nice 0: web x2; nice 10: worker-payment"
    ]


def test_the_tree_reads_each_part_s_niceness_from_its_process() -> None:
    """The test process stands for ``pizzeria up``; its child lowers its own priority.
    The child is named as a part (``app.cli nice-probe``): a plain ``python`` shared its
    name with the test process's other children (a resource tracker), which hid it."""
    code = "import os, time; os.nice(7); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code, "app.cli", "nice-probe"])
    try:
        tree = ProcessTree(os.getpid())
        deadline = time.monotonic() + 10
        # named once it runs (a child not yet past exec is a copy of this process,
        # "python"), then until it has run its os.nice
        part = part_name(psutil.Process(child.pid))
        while tree.niceness().get(part) != 7 and time.monotonic() < deadline:
            time.sleep(0.05)
            part = part_name(psutil.Process(child.pid))
        assert tree.niceness()[part] == 7
        assert tree.processes()[part] == 1
    finally:
        child.kill()
        child.wait()


#: a part that spins on CPU 0 for a second, then sleeps
#: half a second of CPU each (not of wall time: on a busy machine a spinner gets less
#: than its share of the second, and the test read "ran 0.74 s" under CI's load)
SPIN_ON_CPU0 = (
    "import os, time; os.sched_setaffinity(0, {0})\n"
    "while time.process_time() < 0.5: pass\n"
    "time.sleep(30)"
)


def test_the_tree_tells_how_long_a_part_ran_and_how_long_it_waited_for_a_cpu() -> None:
    """Two parts spinning on one CPU: each runs about half the time and waits, runnable,
    the other half; the bench's "waited for a CPU" figure is that wait."""
    tree = ProcessTree(os.getpid())
    children = [
        subprocess.Popen([sys.executable, "-c", SPIN_ON_CPU0, "app.cli", "spin-probe"])
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 20
        while "spin-probe" not in psutil.Process(children[0].pid).cmdline():
            time.sleep(0.01)  # named as a part once past exec
        part = part_name(psutil.Process(children[0].pid))
        began = (tree.scheduled(part), time.perf_counter())
        while tree.scheduled(part)[0] < 0.95 and time.monotonic() < deadline:
            time.sleep(0.05)  # until both have spun their half second
        shares = _time_shares(began, tree.scheduled(part))
        run, wait = tree.scheduled(part)
        assert run >= 0.95, f"two spinners, half a second of CPU each: ran {run:.2f} s"
        assert wait >= 0.3, f"sharing one CPU, they waited only {wait:.2f} s"
        assert 10 <= shares["ran"] <= 210 and shares["waited_for_a_cpu"] >= 10, shares
    finally:
        for child in children:
            child.kill()
            child.wait()
