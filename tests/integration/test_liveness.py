"""Liveness of the parts that serve no HTTP: the heartbeat probe the manifests run.

A relay or worker whose event loop is wedged (here: SIGSTOP) fails the probe, so
Kubernetes restarts it; one that merely cannot reach PostgreSQL stays alive (an outage of
a dependency must not restart every pod), and a process that recovers passes again.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import env
from tests.support.processes import spawn, start_redis, stop

pytestmark = [pytest.mark.shutdown, pytest.mark.timeout(600)]

STALE_AFTER = 3  # the probe's age limit here (the manifests allow 30 s)


def probe(beat: Path) -> int:
    """The manifests' exec probe, run the same way."""
    command = [sys.executable, "-m", "app.platform.liveness", str(beat), str(STALE_AFTER)]
    return subprocess.run(command, cwd=env.ROOT, capture_output=True, check=False).returncode


async def until_probe(beat: Path, expected: int, what: str, timeout: float = 120) -> float:
    started = time.monotonic()
    while (code := await asyncio.to_thread(probe, beat)) != expected:
        assert time.monotonic() - started < timeout, f"{what}: probe still exits {code}"
        await asyncio.sleep(0.2)
    return time.monotonic() - started


@pytest.fixture
def redis_url() -> Iterator[str]:
    with start_redis() as url:
        yield url


@pytest.mark.parametrize("part", [["relay"], ["worker", "coupon"]], ids=["relay", "worker"])
async def test_a_wedged_part_fails_its_liveness_probe_and_a_recovered_one_passes(
    part: list[str], redis_url: str, tmp_path: Path
) -> None:
    beat = tmp_path / "pizzeria" / "heartbeat"
    assert probe(beat) == 1, "no heartbeat yet: not alive"
    unreachable_db = env.database_url(f"pizzeria_test_no_such_db_{env._RUN}")
    process = spawn(
        part, {"DATABASE_URL": unreachable_db, "REDIS_URL": redis_url, "LIVENESS_FILE": str(beat)}
    )
    try:
        await until_probe(beat, 0, "started")
        await asyncio.sleep(STALE_AFTER + 1)
        assert await asyncio.to_thread(probe, beat) == 0, "alive without PostgreSQL"
        assert process.poll() is None

        process.send_signal(signal.SIGSTOP)  # a wedged event loop
        await until_probe(beat, 1, "wedged", timeout=STALE_AFTER + 30)

        process.send_signal(signal.SIGCONT)
        await until_probe(beat, 0, "recovered", timeout=60)
    finally:
        process.send_signal(signal.SIGCONT)
        stop([process])
