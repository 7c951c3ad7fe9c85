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
#: net allocations of container objects between two young collections (CPython: 700).
#: A job or a request allocates thousands, so a busy process ran a hundred young
#: collections a second at 0.6-1 ms of CPU each (gc callbacks, thread time, under the
#: order bench); at 10,000 it runs a fifteenth as many, and their CPU per order fell from
#: 0.6 to 0.14 ms in the web and by about half in the workers.
YOUNG_COLLECTION_EVERY = 10_000


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
    seconds. A worker or the relay pays the same: a full collection walked its 135,000
    start-up objects in 100-250 ms, every job in flight waiting. Objects made later are
    collected as before, young ones less often (``YOUNG_COLLECTION_EVERY``)."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _, middle, old = gc.get_threshold()
        gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, old)
        _frozen = True
