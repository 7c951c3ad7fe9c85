"""The event loop every long-running process uses: uvloop where it is installed.

A worker or the relay spends about a quarter of its CPU in asyncio's own loop (many
small socket reads and writes to PostgreSQL and Redis per job); uvloop does the same
work in C. The web server already gets it through uvicorn's ``loop="auto"``.
"""

from __future__ import annotations

import asyncio
import contextlib


def use_fast_event_loop() -> None:
    """Make new event loops uvloop loops (call before creating one); a no-op without it."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
