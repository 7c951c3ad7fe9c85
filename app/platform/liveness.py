"""A liveness beat for the parts that serve no HTTP (the relay and the workers).

The process's event loop touches a file every few seconds; a Kubernetes exec probe checks
the file's age. A loop that is blocked (a sync call that never returns, a CPU-bound
runaway) stops touching it, the probe fails, and the pod is restarted: the seed's
self-healing. The check is an external dependency-free file read on purpose: a Redis or
PostgreSQL outage must not make every pod restart.

(``app.platform.heartbeat`` is another thing: the state each process reports in
PostgreSQL for ``/health``. That one can stall with PostgreSQL; this one must not.)

The probe, cheap enough to run every few seconds (standard library only)::

    python -m app.platform.liveness /tmp/pizzeria/alive 30

exits 0 when the file was touched in the last 30 seconds, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

INTERVAL_SECONDS = 2.0


async def beat(path: Path, interval: float = INTERVAL_SECONDS) -> None:
    """Touch ``path`` every ``interval`` seconds for as long as the loop runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        # from the loop itself, not a thread: the point is to prove the loop runs
        path.touch()  # noqa: ASYNC240 - a local file, microseconds
        await asyncio.sleep(interval)


def start(path: str) -> asyncio.Task[None] | None:
    """The liveness task for this process (none when ``LIVENESS_FILE`` is not set)."""
    return asyncio.create_task(beat(Path(path)), name="liveness") if path else None


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def age(path: Path) -> float | None:
    """Seconds since the last beat; None if there never was one."""
    try:
        return time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m app.platform.liveness FILE MAX_AGE_SECONDS", file=sys.stderr)
        return 2
    seconds = age(Path(argv[0]))
    if seconds is None:
        print(f"no liveness beat at {argv[0]}", file=sys.stderr)
        return 1
    if seconds > float(argv[1]):
        print(f"liveness beat stale: {seconds:.1f}s old (limit {argv[1]}s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
