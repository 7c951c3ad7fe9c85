"""The Grafana dashboard's queries are valid PromQL that name metrics (which the shop
really exports is checked against live scrapes in tests/integration/test_observability.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.promql import DASHBOARD, dashboard_queries, metric_names, promtool

pytestmark = pytest.mark.observability


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, path) (rate(pizzeria_http_request_duration"
        '_seconds_bucket{status_code=~"5..", path!="/x"}[5m]))) / on (path) group_left'
        " max(pizzeria_queue_depth offset 5m) > bool 0.5 or vector(0)"
    )
    assert metric_names(expr) == {
        "pizzeria_http_request_duration_seconds_bucket",
        "pizzeria_queue_depth",
    }


def test_the_dashboard_covers_the_shop() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("orders", "payments", "breakers", "queue", "outbox", "sse"):
        assert topic in titles, topic
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for query in dashboard_queries():
        assert metric_names(query), f"names no metric: {query}"


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": query}
                    for i, query in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
