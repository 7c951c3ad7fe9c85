"""``/health`` is degraded when a part has nobody left to do its work."""

from __future__ import annotations

from datetime import UTC, datetime

from app.operations.health import parts_gone
from app.platform.heartbeat import ProcessState


def _process(name: str, kind: str, *, stale: bool) -> ProcessState:
    seen = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    return ProcessState(name, kind, "ok", None, seen, stale, {})


def test_a_part_whose_only_process_stopped_beating_is_gone() -> None:
    processes = [
        _process("relay@a:1", "relay", stale=False),
        _process("worker:payment@a:2", "worker:payment", stale=True),
    ]
    assert parts_gone(processes) == ["worker:payment"]


def test_a_process_replaced_by_another_of_its_kind_is_not_a_part_gone() -> None:
    processes = [
        _process("worker:payment@a:2", "worker:payment", stale=True),  # killed, restarted
        _process("worker:payment@a:9", "worker:payment", stale=False),
        _process("relay@a:1", "relay", stale=False),
    ]
    assert parts_gone(processes) == []
