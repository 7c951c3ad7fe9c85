"""The process-wide stop state that the worker and the relay read at start-up."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator

import pytest
import uvicorn

from app.platform import lifecycle, logs


@pytest.fixture
def restored() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        lifecycle.reset()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_before_start_up_is_remembered_not_fatal(
    restored: None, sig: signal.Signals
) -> None:
    lifecycle.hold_stop_signals()
    assert lifecycle.early_stop() is None
    signal.raise_signal(sig)  # Python's default would end this process (or raise)
    assert lifecycle.early_stop() == sig


async def test_the_drain_logs_as_the_process_not_as_the_request_it_interrupted(
    restored: None,
) -> None:
    """The signal lands while some request runs: its id must not label the drain."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(logs._ContextFilter())
    logger = logging.getLogger("pizzeria.lifecycle")
    logger.addHandler(handler)
    server = lifecycle.GracefulServer(uvicorn.Config(app=None), drain_seconds=0.01)
    closed = asyncio.Event()
    unregister = lifecycle.on_stop_accepting(closed.set)
    try:
        with logs.bound(request_id="interrupted-request"):
            server.handle_exit(signal.SIGTERM, None)
        await asyncio.wait_for(closed.wait(), 5)
    finally:
        unregister()
        logger.removeHandler(handler)
    assert [r.getMessage().split(":")[0] for r in records] == ["SIGTERM", "closing"]
    assert [getattr(r, "request_id", None) for r in records] == [None, None]
