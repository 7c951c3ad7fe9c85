"""A long-running process's heap after start-up: frozen out of the collector's reach, and
young collections less often. Run in a fresh interpreter: the collector is per process."""

from __future__ import annotations

import json
import subprocess
import sys

from app.platform.loop import YOUNG_COLLECTION_EVERY

PROBE = """
import gc, json
import app.main  # the shop's modules, as a process holds them once started
from app.platform.loop import freeze_startup_heap
before = gc.get_freeze_count(), gc.get_threshold()
freeze_startup_heap()
freeze_startup_heap()  # once per process: a second call changes nothing
print(json.dumps({"before": before, "after": (gc.get_freeze_count(), gc.get_threshold())}))
"""


def test_the_start_up_heap_is_frozen_and_young_collections_come_less_often() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    (frozen_before, threshold_before), (frozen_after, threshold_after) = (
        seen["before"],
        seen["after"],
    )
    assert frozen_before == 0
    assert frozen_after > 50_000, "the modules, mappers and routes are out of the collector's reach"
    assert threshold_before[0] == 700
    assert threshold_after == [YOUNG_COLLECTION_EVERY, *threshold_before[1:]]
