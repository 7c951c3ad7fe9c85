"""How many worker processes ``pizzeria up`` starts per queue, what they are called, and
at what CPU priority the background parts run."""

from __future__ import annotations

import os
import socket

import pytest

from devtools.embedded import free_port
from devtools.launcher import (
    BACKGROUND_NICE,
    background_nice,
    connection_budget,
    default_web_replicas,
    metrics_flag,
    shop_parts,
    web_replicas,
    worker_part_names,
    worker_replicas,
)
from workers import QUEUES


def test_every_queue_gets_one_worker_unless_told_otherwise() -> None:
    assert worker_replicas(None) == dict.fromkeys(QUEUES, 1)
    assert worker_replicas("") == dict.fromkeys(QUEUES, 1)


def test_the_environment_sets_replicas_per_queue() -> None:
    replicas = worker_replicas(" payment=1, status=3 ")
    assert replicas["payment"] == 1 and replicas["status"] == 3 and replicas["coupon"] == 1


@pytest.mark.parametrize("spec", ["kitchen=2", "payment=0", "payment", "payment=two"])
def test_a_replica_count_that_makes_no_sense_is_refused_with_the_queues_named(spec: str) -> None:
    with pytest.raises(RuntimeError, match="PIZZERIA_WORKER_REPLICAS") as refused:
        worker_replicas(spec)
    assert "payment" in str(refused.value)


def test_replicas_are_named_after_their_queue_and_share_it() -> None:
    names = worker_part_names({"payment": 3, "status": 1})
    assert names == [
        ("worker-payment", "payment"),
        ("worker-payment-2", "payment"),
        ("worker-payment-3", "payment"),
        ("worker-status", "status"),
    ]


def test_each_replica_is_a_worker_part_of_its_queue() -> None:
    ports = {"worker-payment": 9001, "worker-payment-2": 9002}
    parts = shop_parts("127.0.0.1", 8000, 8001, {}, ports, worker_replicas("payment=2"))
    payment = [p for p in parts if p.queue == "payment"]
    assert [p.name for p in payment] == ["worker-payment", "worker-payment-2"]
    assert [p.queue for p in parts if p.name in ("web", "relay", "sandbox")] == [None] * 3


def test_background_parts_yield_by_default_and_the_environment_can_change_it() -> None:
    assert background_nice(None) == background_nice(" ") == BACKGROUND_NICE > 0
    assert background_nice("0") == 0 and background_nice(" 3 ") == 3


@pytest.mark.parametrize("value", ["-5", "20", "low", "1.5", "\u00b2"])
def test_a_niceness_that_makes_no_sense_is_refused_with_its_name(value: str) -> None:
    with pytest.raises(RuntimeError, match="PIZZERIA_BACKGROUND_NICE"):
        background_nice(value)


def test_one_web_process_per_cpu_at_most_two_unless_told_otherwise() -> None:
    assert web_replicas(None, cpus=1) == web_replicas(" ", cpus=1) == 1
    assert web_replicas(None, cpus=2) == 2
    assert web_replicas(None, cpus=16) == 2
    assert web_replicas(" 1 ", cpus=16) == 1
    assert web_replicas(" 3 ", cpus=1) == 3


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity: Linux")
def test_the_default_counts_the_cpus_this_process_may_use() -> None:
    """``taskset`` or a container's cpuset limits the CPUs: the machine's count would be
    wrong. (A CPU quota, ``docker --cpus``, is not seen: set PIZZERIA_WEB_REPLICAS.)"""
    allowed = os.sched_getaffinity(0)
    assert default_web_replicas() == min(2, len(allowed))
    os.sched_setaffinity(0, {min(allowed)})
    try:
        assert default_web_replicas() == 1
    finally:
        os.sched_setaffinity(0, allowed)


@pytest.mark.parametrize("value", ["0", "17", "two", "-1", "1.5", "\u00b2"])
def test_a_web_replica_count_that_makes_no_sense_is_refused_with_its_name(value: str) -> None:
    with pytest.raises(RuntimeError, match="PIZZERIA_WEB_REPLICAS"):
        web_replicas(value)


def test_web_replicas_are_named_in_turn_after_the_first() -> None:
    parts = shop_parts("127.0.0.1", 8000, 8001, {}, web=3)
    assert [p.name for p in parts if p.name.startswith("web")] == ["web", "web-2", "web-3"]


def test_a_web_replica_is_ready_only_once_it_listens_itself() -> None:
    """Replicas share the port, so a health answer may come from another one."""
    import os
    import socket

    from devtools.launcher import _listening

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert not _listening(os.getpid(), port), "bound, not listening yet"
        sock.listen()
        assert _listening(os.getpid(), port)
    assert not _listening(None, port)


def test_the_connection_budget_counts_every_pool_at_its_full_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each pool holds up to twice its configured size (``create_engine``): the web's
    (``DATABASE_POOL_SIZE``, 10), the relay's 2, each worker's (``WORKER_DB_POOL``, 4),
    and the relay's listener."""
    from app.platform.settings import get_settings

    monkeypatch.setenv("DATABASE_POOL_SIZE", "10")
    monkeypatch.setenv("WORKER_DB_POOL", "4")
    get_settings.cache_clear()
    try:
        assert connection_budget(web=2, workers=6) == 2 * (2 * 10 + 2 + 6 * 4) + 1 == 93
        assert connection_budget(web=1, workers=6) == 73
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_a_metrics_port_taken_since_it_was_picked_is_swapped_at_the_next_start() -> None:
    """``pizzeria up`` picks the parts' metrics ports before it starts them; a port some
    other process binds meanwhile made a web replica die on it at every restart (CI saw
    "still starting after 302 s: web-2"). Each start asks again, and a taken port is
    replaced, in the launcher's map too (what it announces)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        free = free_port()
        ports = {"web-2": taken, "relay": free}
        assert metrics_flag(ports, "relay") == ["--metrics-port", str(free)]
        swapped = metrics_flag(ports, "web-2")
        assert ports["web-2"] != taken and swapped == ["--metrics-port", str(ports["web-2"])]
    assert metrics_flag(ports, "worker-payment") == []  # no port of its own
