"""One logging configuration for every part (web, relay, workers, sandbox).

``LOG_FORMAT=json`` writes one JSON object per line (``time``, ``level``, ``part``,
``logger``, ``message`` and, when known, ``request_id``, ``correlation_id`` and
``event_id``); ``console`` (the default) writes the same as a readable line. The ids come
from context variables: the web binds the request id for each request, a job binds the
order id (the event's correlation id) and the event id, so
``jq 'select(.correlation_id == "<order id>")'`` over every part's output follows one
order from the web request through the relay to each worker.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from litestar.types import ASGIApp, Receive, Scope, Send

from app.platform.settings import Settings, get_settings

CONTEXT_FIELDS = ("request_id", "correlation_id", "event_id")
_context: dict[str, ContextVar[str | None]] = {
    name: ContextVar(name, default=None) for name in CONTEXT_FIELDS
}
#: loggers that are chatty at INFO (arq prints every job's arguments, httpx every call)
QUIET_LOGGERS = ("arq", "httpx", "httpcore", "uvicorn.access")
_part = "pizzeria"


class _ContextFilter(logging.Filter):
    """Stamp every record with the part and the ids bound in the current context (an
    id passed in ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.part = _part
        for name, var in _context.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ids only when they are known."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "part": getattr(record, "part", _part),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """A readable line; the ids follow the message as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s [%(part)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(
            f"{name}={value}"
            for name in CONTEXT_FIELDS
            if (value := getattr(record, name, None)) is not None
        )
        if not ids:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the ids
        return f"{head} {ids}{sep}{tail}"


def part() -> str:
    """This process's part of the shop (``web``, ``relay``, ``worker-payment`` …), as its
    log lines name it; ``pizzeria`` before ``configure_logging``."""
    return _part


def configure_logging(part: str, settings: Settings | None = None) -> None:
    """Send every logger of this process to stderr in the configured format; call once
    at the start of a part (calling again replaces the handler, never doubles it)."""
    global _part
    _part = part
    observability = (settings or get_settings()).observability
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    json_format = observability.log_format.lower() == "json"
    handler.setFormatter(JsonFormatter() if json_format else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(observability.log_level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own handlers would bypass ours
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


@contextlib.contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Bind ids (``request_id``, ``correlation_id``, ``event_id``) for the enclosed code."""
    tokens = [(_context[name], _context[name].set(value)) for name, value in ids.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind(**ids: str | None) -> None:
    """Bind ids for the rest of the current task (one web request, one job)."""
    for name, value in ids.items():
        _context[name].set(value)


def request_context(app: ASGIApp) -> ASGIApp:
    """Web middleware: every log line of a request carries its ``request_id`` (the same
    id the response's ``X-Request-ID`` header shows)."""
    from app.platform.headers import request_id

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        with bound(request_id=request_id(scope), correlation_id=None, event_id=None):
            await app(scope, receive, send)

    return middleware


Job = Callable[..., Coroutine[Any, Any, Any]]
_job_log = logging.getLogger("pizzeria.job")


def job_context(name: str, task: Job) -> Job:
    """Bind the event's correlation id (its order) and event id while a job runs, and log
    one line per run with its outcome, so a job's every log line can be found by order."""

    @functools.wraps(task)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        event = args[0] if args and isinstance(args[0], dict) else {}
        correlation_id = event.get("correlation_id")
        event_id = event.get("id")
        started = time.perf_counter()
        with bound(
            correlation_id=str(correlation_id) if correlation_id else None,
            event_id=str(event_id) if event_id else None,
        ):
            try:
                result = await task(ctx, *args, **kwargs)
            except BaseException as exc:
                _job_log.info(
                    "%s (%s) try %s: %s after %.3fs",
                    name,
                    event.get("type", "?"),
                    ctx.get("job_try"),
                    why(exc),
                    time.perf_counter() - started,
                )
                raise
            _job_log.info(
                "%s (%s) try %s: %s in %.3fs",
                name,
                event.get("type", "?"),
                ctx.get("job_try"),
                result,
                time.perf_counter() - started,
            )
            return result

    return run


class OutageNotice:
    """A loop that retries through an outage says so once, not at every round, and says
    once when it works again: ``failed(exc)`` each failing round, ``worked()`` each good
    one, ``forget()`` when the next outage should be said again without a recovery line
    (nothing was tried)."""

    def __init__(self, logger: logging.Logger, failing: str, working: str) -> None:
        """``failing`` is logged with the error's kind and text appended; ``working`` as is."""
        self._log, self._failing, self._working = logger, failing, working
        self.down = False

    def failed(self, exc: BaseException) -> None:
        if not self.down:
            self._log.warning("%s (%s: %s)", self._failing, type(exc).__name__, exc)
        self.down = True

    def worked(self) -> None:
        if self.down:
            self._log.info(self._working)
        self.down = False

    def forget(self) -> None:
        self.down = False


def why(exc: BaseException) -> str:
    """What a job's exception says, for its log line: a retry names what it retries
    for (the partner's error it was raised from), so an operator reading "Retry" can
    act on it without a debugger."""
    said = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        said += (
            f" ({type(cause).__name__}: {cause})" if str(cause) else f" ({type(cause).__name__})"
        )
    return said[:300]
