"""The chaos suite runs only when asked for (``-m chaos``): it owns its own PostgreSQL,
Redis, partners and shop processes and takes a few minutes. See the README's "Chaos suite".
"""

from __future__ import annotations

import pytest

from tests.chaos.report import RESULTS, summary_lines


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: fault-injection suite with its own services (run with -m chaos)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the chaos suite out of a run that did not ask for it by marker."""
    if "chaos" in (config.option.markexpr or ""):
        return
    chaos = [item for item in items if item.get_closest_marker("chaos")]
    if chaos:
        config.hook.pytest_deselected(items=chaos)
        items[:] = [item for item in items if not item.get_closest_marker("chaos")]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("chaos: orders, faults, time to converge")
    for line in summary_lines(RESULTS):
        terminalreporter.write_line(line)
