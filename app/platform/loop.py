"""The event loop every long-running process uses: uvloop where it is installed.

A worker or the relay spends about a quarter of its CPU in asyncio's own loop (many
small socket reads and writes to PostgreSQL and Redis per job); uvloop does the same
work in C. The web server already gets it through uvicorn's ``loop="auto"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc

_frozen = False


def use_fast_event_loop() -> None:
    """Make new event loops uvloop loops (call before creating one); a no-op without it."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def freeze_startup_heap() -> None:
    """Once per process, after start-up: move every object alive now (modules, classes,
    the app's routes, mappers and settings) out of the cyclic garbage collector's reach.
    A web process holding thousands of SSE streams otherwise re-scans that static heap
    in every full collection: with 2,000 streams, 46 % of the web's CPU during order
    events went to collections (py-spy), and each one held every frame back for up to
    seconds. Objects made later are collected as before."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True
