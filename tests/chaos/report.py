"""The chaos run's figures, printed at the end of the pytest run (terminal summary)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.chaos.campaign import PhaseResult

#: every phase's result in the order they ran (filled by the chaos tests)
RESULTS: list[PhaseResult] = []
#: when the chaos world started coming up (monotonic), for the run's wall time
STARTED: list[float] = []


def mark_start() -> None:
    STARTED.append(time.monotonic())


def summary_lines(results: list[PhaseResult]) -> list[str]:
    header = (
        f"{'phase':<16} {'orders':>6} {'acked':>5} {'fault s':>7} {'workload s':>10} "
        f"{'converge s':>10} {'violations':>10}  verdict"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        converge = "never" if r.converge_seconds is None else f"{r.converge_seconds:.1f}"
        violations = len(r.report.violations) if r.report else 0
        rules = ",".join(sorted(r.report.by_rule())) if r.report else ""
        extra = [rules] if rules else []
        if r.died:
            extra.append(f"died: {'; '.join(r.died)}")
        if r.anomalies:
            extra.append(f"{len(r.anomalies)} anomalies")
        if r.gave_up:
            extra.append(f"{len(r.gave_up)} orders stuck")
        verdict = "ok" if r.ok else "FAIL " + " | ".join(extra)
        lines.append(
            f"{r.phase:<16} {r.orders:>6} {r.acknowledged:>5} {r.fault_seconds:>7.1f} "
            f"{r.workload_seconds:>10.1f} {converge:>10} {violations:>10}  {verdict}"
        )
    total = sum(r.orders for r in results)
    acked = sum(r.acknowledged for r in results)
    converged = [r.converge_seconds for r in results if r.converge_seconds is not None]
    lines.append("-" * len(header))
    lines.append(
        f"{len(results)} phases, {total} orders ({acked} acknowledged), "
        f"{sum(1 for r in results if r.ok)} phases ok; "
        + (f"slowest convergence {max(converged):.1f}s" if converged else "no convergence")
    )
    if STARTED:
        lines.append(f"wall time {time.monotonic() - STARTED[0]:.0f}s (start-up and every phase)")
    for r in results:
        for note in r.notes:
            lines.append(f"  {r.phase}: {note}")
    return lines
