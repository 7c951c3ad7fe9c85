"""The app services a route handler asks for by name (Litestar dependency injection).

``create_app`` (app/main.py) builds each service once, on ``app.state``, and registers
``PROVIDERS`` for every route. A handler names the one it needs as a parameter, so its
signature says what it uses and a test can see it, instead of reaching into ``state``::

    async def board(
        self,
        db: NamedDependency[AsyncSession],
        breakers: NamedDependency[PartnerBreakers],
    ) -> Any: ...

=================== ===================================================================
``db``              a session for this request, closed after it
``settings``        the shop's settings
``session_factory`` new sessions, for work outside the request (an SSE stream's renders)
``breakers``        the partners' circuit breakers (``app.breakers`` builds them)
``broadcaster``     this process's pub/sub fan-out, which live pages listen to
=================== ===================================================================

The composition adds what only it can build (``card_vault``: the payment provider).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar._kwargs.cleanup import DependencyCleanupGroup
from litestar._kwargs.dependencies import resolve_dependency
from litestar._kwargs.kwargs_model import KwargsModel
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.partners import PartnerBreakers
from app.platform.pubsub import Broadcaster
from app.platform.settings import Settings
from app.platform.web import database_unavailable

log = logging.getLogger("pizzeria.web")


async def provide_db(state: State) -> AsyncIterator[AsyncSession]:
    """The request's session. Ending it rolls back what the handler left open; when
    PostgreSQL went away meanwhile (a restart cut the connection), that rollback fails,
    but the transaction died with its connection: nothing to undo, and the handler's own
    answer (a 409 refusal, a page it read) stands instead of a 500 (issue 9)."""
    session: AsyncSession = state.session_factory()
    try:
        yield session
    finally:
        try:
            await session.close()
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            log.warning("closing a session on a lost connection: %s", type(exc).__name__)
            with contextlib.suppress(Exception):
                await session.invalidate()  # the pool forgets the dead connection


def provide_settings(state: State) -> Settings:
    return state.settings  # type: ignore[no-any-return]


def provide_session_factory(state: State) -> async_sessionmaker[AsyncSession]:
    return state.session_factory  # type: ignore[no-any-return]


def provide_breakers(state: State) -> PartnerBreakers:
    return state.breakers  # type: ignore[no-any-return]


def provide_broadcaster(state: State) -> Broadcaster:
    return state.broadcaster  # type: ignore[no-any-return]


PROVIDERS: dict[str, Provide] = {
    "db": Provide(provide_db),
    "settings": Provide(provide_settings, sync_to_thread=False),
    "session_factory": Provide(provide_session_factory, sync_to_thread=False),
    "breakers": Provide(provide_breakers, sync_to_thread=False),
    "broadcaster": Provide(provide_broadcaster, sync_to_thread=False),
}


async def _resolve_in_turn(
    self: KwargsModel, connection: ASGIConnection[Any, Any, Any, Any], kwargs: dict[str, Any]
) -> DependencyCleanupGroup:
    """``KwargsModel.resolve_dependencies``, one dependency after another.

    Litestar resolves the dependencies of one level concurrently, in an anyio task group:
    a task per dependency. Ours are values kept on ``app.state``, a session (no I/O until
    used) and the caller that the guard already checked, so none waits on another and
    the tasks are pure cost: placing an order asks for five, and their task group took
    about 300 µs of CPU per request on a machine where the web spent 4.5 ms on an order
    (``README.md``, round 28). A failing dependency raises its own error, as Litestar's
    version unwraps the group's first."""
    cleanup_group = DependencyCleanupGroup()
    for batch in self.dependency_batches:
        for dependency in batch:
            await resolve_dependency(dependency, connection, kwargs, cleanup_group)
    return cleanup_group


def resolve_in_turn() -> None:
    """Make every route resolve its dependencies in turn (``create_app`` calls it)."""
    KwargsModel.resolve_dependencies = _resolve_in_turn  # type: ignore[method-assign]
