"""``pizzeria bench orders --repeat N``: the median and range of the key figures over N
runs on one shop, since one run's api/raw can be a fifth off the next one's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devtools.bench_run import Report, repeat_summary, summary_table, write_json


def _run(ratio: float | None, placed: float, paid: float) -> dict[str, Any]:
    return {
        "placement": {
            "api": {"rate": placed},
            "raw": {"rate": 1200.0},
            "ratio": None if ratio is None else {"rate": ratio, "p99": 4.0},
        },
        "pipeline": {"orders_per_s_through_payment": paid},
        "cpu_ms_per_order_total": 12.5,
        "shop": {"processes_measured": True},
    }


def test_each_figure_gets_its_median_and_range() -> None:
    summary = repeat_summary([_run(0.2, 240, 150), _run(0.3, 360, 140), _run(0.25, 300, 160)])
    assert summary["api/raw, workers running"] == {
        "median": 0.25,
        "low": 0.2,
        "high": 0.3,
        "runs": 3,
    }
    assert summary["POST /api/orders a second"]["median"] == 300
    assert summary["orders through payment a second"] == {
        "median": 150,
        "low": 140,
        "high": 160,
        "runs": 3,
    }


def test_a_run_without_a_figure_leaves_only_that_figure_short() -> None:
    summary = repeat_summary([_run(None, 240, 150), _run(0.3, 360, 140)])
    assert summary["api/raw, workers running"]["runs"] == 1
    assert summary["p99 / raw p99"]["runs"] == 1
    assert summary["POST /api/orders a second"]["runs"] == 2


def test_cpu_per_order_counts_only_runs_that_measured_the_shop_s_processes() -> None:
    """Against a shop whose ``up`` was not found the CPU figure is the bench's own."""
    unmeasured = _run(0.2, 240, 150) | {"shop": {"processes_measured": False}}
    summary = repeat_summary([unmeasured, _run(0.3, 360, 140)])
    assert summary["CPU ms per order"]["runs"] == 1
    assert "CPU ms per order" not in repeat_summary([unmeasured])


def test_the_summary_reads_as_a_table() -> None:
    text = summary_table(repeat_summary([_run(0.2, 240, 150), _run(0.3, 360, 140)]))
    assert text.splitlines()[0] == "over 2 runs: median (lowest to highest)"
    assert "api/raw, workers running" in text and "(0.2 to 0.3)" in text


def test_several_runs_are_written_with_their_summary(tmp_path: Path) -> None:
    path = tmp_path / "runs.json"
    write_json([Report(), Report()], str(path))
    written = json.loads(path.read_text())
    assert len(written["runs"]) == 2 and "machine" in written["runs"][0]
    assert written["summary"] == repeat_summary(written["runs"])
    write_json(Report(), str(path))
    assert "placement" in json.loads(path.read_text())  # one run: as before
