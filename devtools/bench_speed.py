"""How fast the machine's CPU is during a run: a fixed piece of pure-Python work, timed
in thread CPU time, in a process of its own, several times a second.

A shared cloud machine changes speed from one run to the next by 10-20 % (other guests on
the same physical cores): the same tree's CPU per order moved from 26.8 to 31.7 ms in
round 9's alternate runs, as much as the change being measured. CPU time counts that
slowdown too, so a fixed piece of work timed alongside the shop slows down with it; CPU
per order divided by the probe's time compares runs taken at different speeds.

The probe costs about 1 % of one core (a ~2 ms piece of work every 200 ms).
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from multiprocessing.connection import Connection
from typing import Any

#: seconds between two pieces of work
PERIOD = 0.2
#: iterations of one piece of work (about 2 ms of CPU on round 9's machine)
ITERATIONS = 2_000


def work() -> int:
    """What a Python service does all day, in small: dicts, strings, small objects,
    a sort. Deterministic: the same instructions every time."""
    total = 0
    rows: list[dict[str, Any]] = []
    for i in range(ITERATIONS):
        qty, price = i % 5 + 1, 900 + i % 7
        rows.append({"id": i, "name": f"pizza-{i % 37}", "qty": qty, "price": price})
        total += qty * price
    rows.sort(key=lambda r: (r["name"], r["id"]))
    return total + len("".join(r["name"] for r in rows[:100]))


def _run(conn: Connection, period: float) -> None:
    samples: list[float] = []
    while not conn.poll(period):
        began = time.thread_time()
        work()
        samples.append(time.thread_time() - began)
    conn.send(samples)


class SpeedProbe:
    """Start it before the run and ``stop`` it after: the median CPU milliseconds of one
    piece of work while the run went on (lower is faster)."""

    def __init__(self, period: float = PERIOD) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        self._conn = ours
        self._process = context.Process(target=_run, args=(theirs, period), daemon=True)
        self._process.start()

    def stop(self) -> dict[str, float]:
        self._conn.send("stop")
        samples: list[float] = self._conn.recv() if self._conn.poll(10) else []
        self._process.join(5)
        if not samples:
            return {}
        ms = sorted(s * 1000 for s in samples)
        return {
            "probe_ms_p50": round(statistics.median(ms), 3),
            "probe_ms_p10": round(ms[len(ms) // 10], 3),
            "probe_ms_p90": round(ms[len(ms) * 9 // 10], 3),
            "samples": len(ms),
        }
