"""The bench's speed probe: a fixed piece of work timed in CPU time, and CPU per order in
its units (``devtools.bench_speed``)."""

from __future__ import annotations

import time

from devtools.bench_run import Report
from devtools.bench_speed import SpeedProbe, work


def test_the_work_is_the_same_every_time() -> None:
    assert work() == work()


def test_the_probe_times_its_work_while_the_run_goes_on() -> None:
    probe = SpeedProbe(period=0.02)
    time.sleep(1.0)
    speed = probe.stop()
    assert speed["samples"] >= 5
    assert 0 < speed["probe_ms_p10"] <= speed["probe_ms_p50"] <= speed["probe_ms_p90"]


def test_cpu_per_order_in_probes_divides_by_the_probe() -> None:
    report = Report(
        cpu_per_order_ms={"web": 6.0, "postgres": 4.0},
        pipeline={"speed_probe": {"probe_ms_p50": 2.5, "samples": 10}},
    )
    assert report.in_probes() == 4.0
    assert report.as_json()["cpu_per_order_in_probes"] == 4.0
    assert Report(cpu_per_order_ms={"web": 6.0}).in_probes() is None
