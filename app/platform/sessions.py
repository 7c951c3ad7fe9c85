"""Server-side sessions in Redis, hardened.

Litestar keeps the session id a browser arrived with; signing in must issue a new one
(session fixation), so this backend rotates the id when a handler asks for it and deletes
the old one. Sessions also end after ``SESSION_IDLE_SECONDS`` without a request (the Redis
TTL, renewed on use) and after ``SESSION_ABSOLUTE_SECONDS`` whatever happens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection, Request
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.types import Empty, Message, ScopeSession
from redis.exceptions import RedisError

from app.platform.settings import Settings

ROTATE = "pizzeria.rotate_session"
DONE_ALREADY = "pizzeria.done_already"
_NEW_ID = "pizzeria.new_session_id"
STARTED = "_started"
log = logging.getLogger(__name__)


def rotate_session(request: Request[Any, Any, Any]) -> None:
    """Give this browser a brand-new session id when the response is sent (at sign-in);
    the absolute limit counts from then."""
    request.scope[ROTATE] = True  # type: ignore[literal-required]


def answer_stands(request: Request[Any, Any, Any]) -> None:
    """This answer reports something already committed (an order placed): if the session
    change cannot be saved, the answer still goes out as it is, not as "try again". A
    checkout answered 503 after its order committed was submitted again from a new
    checkout when Redis had lost the session too: a second order, charged (found by the
    chaos suite). Only the session's own change is lost (the basket is not emptied)."""
    request.scope[DONE_ALREADY] = True  # type: ignore[literal-required]


class RotatingSessionBackend(ServerSideSessionBackend):
    config: PizzeriaSessionConfig

    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        scope: Any = connection.scope
        if scope.get(ROTATE):
            if _NEW_ID not in scope:
                scope[_NEW_ID] = self.generate_session_id()
            return str(scope[_NEW_ID])
        return super().get_session_id(connection)

    async def store_in_message(
        self,
        scope_session: ScopeSession,
        message: Message,
        connection: ASGIConnection[Any, Any, Any, Any],
    ) -> None:
        scope: Any = connection.scope
        old = connection.cookies.get(self.config.key) or ""
        known = old not in ("", "null")
        if not scope_session and scope_session is not Empty:
            if not known:
                return  # nothing to keep and no session yet: create none, set no cookie
            scope_session = Empty  # emptied: end it like a sign-out
        if scope_session is Empty:
            if known:
                await self.delete(old, store=self.config.get_store_from_app(scope["app"]))
            if known or scope.get(ROTATE):
                self._expire_cookie(message)
            return
        if scope.get(ROTATE) and isinstance(scope_session, dict):
            scope_session = {**scope_session, STARTED: int(self.config.clock())}
        try:
            if scope.get(ROTATE) and known:
                await self.delete(old, store=self.config.get_store_from_app(scope["app"]))
            await super().store_in_message(scope_session, message, connection)
        except RedisError as exc:
            if scope.get(DONE_ALREADY):
                log.warning("session not saved (%r); the answer stands: its change committed", exc)
                return
            # Redis went away while this answer was leaving: the session change is lost,
            # so the answer must not claim success (nor be a 500): "try again".
            start: Any = message  # the http.response.start message, not yet sent
            start["status"] = 503
            headers = MutableScopeHeaders.from_message(message)
            headers["Retry-After"] = "2"
            if "location" in headers:
                del headers["location"]

    def _expire_cookie(self, message: Message) -> None:
        """Tell the browser to drop the session cookie now (``Max-Age=0``), not in hours."""
        cookie = Cookie(
            key=self.config.key,
            value="",
            path=self.config.path,
            max_age=0,
            expires=0,
            secure=self.config.secure,
            httponly=self.config.httponly,
            samesite=self.config.samesite,
        )
        MutableScopeHeaders.from_message(message).add("Set-Cookie", cookie.to_header(header=""))

    async def load_from_connection(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> dict[str, Any]:
        data = await super().load_from_connection(connection)
        started = data.get(STARTED)
        if (
            started is not None
            and self.config.clock() - int(started) > self.config.absolute_seconds
        ):
            session_id = connection.cookies.get(self.config.key)
            if session_id:
                await self.delete(
                    session_id, store=self.config.get_store_from_app(connection.scope["app"])
                )
            return {}
        return data


@dataclass
class PizzeriaSessionConfig(ServerSideSessionConfig):
    _backend_class = RotatingSessionBackend
    absolute_seconds: int = 12 * 3600
    #: what the absolute limit is measured with (a test passes a clock it moves)
    clock: Callable[[], float] = time.time


def session_config(
    settings: Settings, clock: Callable[[], float] = time.time
) -> PizzeriaSessionConfig:
    """Cookie: HttpOnly, SameSite=Lax; over HTTPS also Secure with the ``__Host-`` prefix."""
    https = settings.security.https
    return PizzeriaSessionConfig(
        key="__Host-pizzeria_session" if https else "pizzeria_session",
        max_age=settings.security.session_idle_seconds,
        renew_on_access=True,
        httponly=True,
        samesite="lax",
        secure=https,
        path="/",
        absolute_seconds=settings.security.session_absolute_seconds,
        clock=clock,
        # The JSON API, partner webhooks and health authenticate otherwise (or not at all):
        # no session there. Otherwise every response would write an empty session to
        # Redis after the handler committed, and a Redis outage would turn a committed
        # change into a 503 (issue 9, defect 6). Static files need none either: with one,
        # each would read and write the session, and a Redis that hangs would leave every
        # page of a signed-in visitor without its styles and scripts.
        exclude=["^/api/", "^/webhooks/", "^/health", "^/static/"],
    )


__all__ = ["Empty", "PizzeriaSessionConfig", "answer_stands", "rotate_session", "session_config"]
