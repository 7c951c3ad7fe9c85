"""Graceful shutdown of the web process: unready at once, then stop accepting, then finish.

A rolling update (Kubernetes, or HAProxy in the tests) sends SIGTERM to a replica that is
still in the load balancer. What must happen, in this order:

1. **Draining** (at once): ``/health/ready`` answers 503, so the balancer takes the replica
   out of rotation. Requests still arriving are served normally: the balancer has not
   noticed yet, refusing them now would fail them. Each answer says ``Connection: close``
   (``close_connections_while_draining``), so no kept-alive connection is left for the
   balancer to send a request down at the moment step 2 closes it (it would get no
   answer: a 502 for a POST, which a balancer must not replay).
2. **Stop accepting** (``SHUTDOWN_DRAIN_SECONDS`` later, once the balancer has noticed):
   the listening socket closes, idle keep-alive connections close, and every live SSE
   stream ends with a ``retry:`` hint, so browsers reconnect - to another replica - and
   get the current state from the read model.
3. **Finish**: requests in flight complete within ``SHUTDOWN_GRACE_SECONDS``; then the
   process exits. Kubernetes' ``terminationGracePeriodSeconds`` must exceed both.

Signals belong to the process, so this state is process-wide: the server's signal
handling (``GracefulServer``) flips it, the app reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import signal
from collections.abc import Callable
from types import FrameType

import uvicorn
from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

log = logging.getLogger("pizzeria.lifecycle")

_draining = False
_stop_hooks: list[Callable[[], None]] = []
_early_stop: signal.Signals | None = None


def hold_stop_signals() -> None:
    """Remember a SIGTERM or SIGINT that arrives before the process handles its own.

    A worker or the relay spends its first seconds importing and connecting; Python's
    default action for SIGTERM would kill it there with -15 (a rolling update, a
    scale-down, a test that stops a fresh worker). Called first thing, this turns such a
    signal into a note that the process reads once its real handling is in place
    (``early_stop``): it then stops at once and cleanly, having taken no work.
    """

    def remember(signum: int, _frame: FrameType | None) -> None:
        global _early_stop
        _early_stop = signal.Signals(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, remember)


def early_stop() -> signal.Signals | None:
    """The stop signal that arrived before the process's own handling, if any."""
    return _early_stop


def is_draining() -> bool:
    """True from the first SIGTERM on: readiness answers 503."""
    return _draining


def on_stop_accepting(hook: Callable[[], None]) -> Callable[[], None]:
    """Call ``hook`` (in the event loop) when the server stops accepting; returns an
    unregister function (an app's lifespan registers on startup, unregisters on exit)."""
    _stop_hooks.append(hook)
    return lambda: _stop_hooks.remove(hook) if hook in _stop_hooks else None


async def close_connections_while_draining(message: Message, _scope: Scope) -> None:
    """A ``before_send`` hook: while draining, every answer ends its connection."""
    if _draining and message["type"] == "http.response.start":
        MutableScopeHeaders.from_message(message)["connection"] = "close"


def begin_draining() -> None:
    global _draining
    _draining = True


def stop_accepting() -> None:
    for hook in list(_stop_hooks):
        try:
            hook()
        except Exception:
            log.exception("stop hook %r failed", hook)


def reset() -> None:
    """Back to serving (a test that drained in-process)."""
    global _draining, _early_stop
    _draining = False
    _early_stop = None


class GracefulServer(uvicorn.Server):
    """uvicorn, with a drain period between SIGTERM and closing the socket.

    uvicorn alone closes the listening socket at the first signal: a balancer that still
    routes to the replica would see refused or reset connections. A second signal skips the
    wait (``kill`` twice, or Ctrl-C twice, still stops it at once).
    """

    def __init__(self, config: uvicorn.Config, drain_seconds: float) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self._signalled = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._signalled:
            super().handle_exit(sig, frame)
            return
        self._signalled = True
        begin_draining()
        # the handler runs inside whatever request was on the CPU: log (and schedule the
        # close) in a context of its own, not with that request's id
        process_wide = contextvars.Context()
        process_wide.run(
            log.warning,
            "%s: draining (unready now, closing in %.1fs)",
            signal.Signals(sig).name,
            self.drain_seconds,
        )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not serving yet: nothing to drain
            super().handle_exit(sig, frame)
            return
        # A signal handler runs between two bytecodes of whatever the loop was doing;
        # call_soon_threadsafe is the safe way back into the loop.
        loop.call_soon_threadsafe(
            loop.call_later, self.drain_seconds, self._close, context=process_wide
        )

    def _close(self) -> None:
        log.warning("closing: no new connections, live streams told to reconnect")
        with contextlib.suppress(Exception):
            stop_accepting()
        self.should_exit = True
