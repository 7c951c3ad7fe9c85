"""The queries the shop ships (Grafana dashboard, alert rules) and the metric names they use."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
DASHBOARD = DOCKER / "grafana" / "pizzeria.json"
ALERT_RULES = DOCKER / "prometheus" / "alerts.yml"

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset"}
KEYWORDS |= {"group_left", "group_right", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def promtool() -> str:
    """Debian's ``prometheus`` package ships it; CI (``.ci/run``) installs it. Missing, it
    fails the test in CI or with ``PIZZERIA_REQUIRE_BROWSER=1`` and skips it elsewhere."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") or os.environ.get("PIZZERIA_REQUIRE_BROWSER") == "1":
            pytest.fail("promtool is missing: apt-get install prometheus (.ci/run does)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return path


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def alert_queries() -> list[str]:
    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    return [str(rule["expr"]) for group in groups for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: identifiers left once strings, label
    matchers, ranges and grouping clauses are removed, minus functions and keywords."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\b\d+(?:ms|[smhdwy])\b", " ", text)  # offset 5m
    text = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", " ", text)
    return {
        name
        for name, call in _IDENTIFIER.findall(text)
        if not call and name.lower() not in KEYWORDS
    }


def exported_names(families: dict[str, str]) -> set[str]:
    """Every series name a scrape makes available, from its families' names and types
    (a counter ``x`` is queried as ``x_total``, a histogram as ``x_bucket``...)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created", ""),
        "gauge": ("",),
        "info": ("_info",),
    }
    return {
        name + suffix for name, kind in families.items() for suffix in suffixes.get(kind, ("",))
    }
