"""The alert rules in docker/prometheus/ pass ``promtool check rules`` and their unit tests
(``promtool test rules``), and every rule has a test that expects it to fire."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.support.promql import ALERT_RULES, promtool

PROMETHEUS = ALERT_RULES.parent
RULES = ALERT_RULES
RULE_TESTS = PROMETHEUS / "alerts.test.yml"

pytestmark = pytest.mark.observability


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )


def alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_rules_are_valid() -> None:
    result = run("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_passes_its_unit_tests() -> None:
    result = run("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_rule_has_a_test_that_makes_it_fire_and_one_that_keeps_it_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = alert_names()
    assert len(names) == len(set(names)), "alert names must be unique"
    assert set(names) <= fired, f"never shown firing: {set(names) - fired}"
    assert set(names) <= quiet, f"never shown quiet: {set(names) - quiet}"
    assert {
        "PartnerBreakerOpen",
        "OutboxLagging",
        "QueueGrowing",
        "DeadLetters",
        "StuckOrders",
        "ServerErrors",
        "QueueWithoutWorker",
    } <= set(names)


def test_the_compose_prometheus_scrapes_every_part_with_the_rules() -> None:
    result = run("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == [RULES.name]
    compose = yaml.safe_load((PROMETHEUS.parent / "compose.yaml").read_text())
    targets = {
        target.split(":")[0]
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    parts = {name for name in compose["services"] if name in ("web", "relay")}
    parts |= {name for name in compose["services"] if name.startswith("worker-")}
    assert targets == parts
    assert "prometheus" in compose["services"]
