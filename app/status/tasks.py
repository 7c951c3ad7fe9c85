"""Status event handlers (queue ``status``): update the read models, then tell the web
processes which pages changed (after commit, so a page never re-reads stale data)."""

from __future__ import annotations

from typing import Any

from arq import Retry

from app.platform.handlers import event_of, note_claimed, retry_delay
from app.platform.outbox import claim
from app.platform.pubsub import publisher
from app.platform.worker import WorkerContext
from app.status import projector

PROJECT = "status.project"


async def project(ctx: WorkerContext, raw: dict[str, Any]) -> bool:
    """Apply the event and record it in the inbox in one transaction (a redelivered
    event finds its inbox row and does nothing; the view's versions would ignore it too)."""
    event = event_of(raw)
    try:
        async with ctx["session_factory"]() as session, session.begin():
            if await claim(session, PROJECT, event.id):
                channels = await projector.apply(session, event)
                await projector.save_views(session)
            else:
                channels = []
    except projector.ViewNotReady as exc:
        raise Retry(defer=retry_delay(ctx["job_try"])) from exc
    note_claimed(PROJECT, event.id)
    if channels:  # one round trip for the order's, the customer's and the board's page
        await publisher(ctx["redis"])([(channel, event.type) for channel in channels])
    return bool(channels)
