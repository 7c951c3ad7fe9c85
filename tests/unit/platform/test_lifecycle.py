"""The process-wide stop state that the worker and the relay read at start-up."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from app.platform import lifecycle


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
