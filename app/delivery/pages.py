"""The staff delivery board: a column per stage, live for every staff browser over SSE."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import service as audit
from app.delivery import service
from app.delivery.models import FORWARD, UNDO, UNDO_SECONDS, DeliveryStatus
from app.operations import service as operations
from app.platform.access import access
from app.platform.breaker import BreakerState
from app.platform.db import read_only, utcnow
from app.platform.errors import Conflict
from app.platform.i18n import N_, Verbatim, current_locale
from app.platform.partners import PartnerBreakers
from app.platform.pubsub import Broadcaster
from app.platform.security import Principal
from app.platform.settings import Settings
from app.platform.sse import SharedWork, channel_updates, sse
from app.platform.web import fragment, is_htmx, page, redirect
from app.status import service as status

COLUMNS: tuple[tuple[DeliveryStatus, str], ...] = (
    (DeliveryStatus.queued, N_("Queued")),
    (DeliveryStatus.preparing, N_("Preparing")),
    (DeliveryStatus.baking, N_("In the oven")),
    (DeliveryStatus.ready, N_("Ready")),
    (DeliveryStatus.out_for_delivery, N_("Out for delivery")),
    (DeliveryStatus.delivered, N_("Delivered")),
    (DeliveryStatus.return_requested, N_("Returns")),
)
ACTION_LABELS = {
    DeliveryStatus.preparing: N_("Start preparing"),
    DeliveryStatus.baking: N_("Into the oven"),
    DeliveryStatus.ready: N_("Ready"),
    DeliveryStatus.out_for_delivery: N_("Out for delivery"),
    DeliveryStatus.delivered: N_("Delivered"),
}


#: a queued card paid less than this long ago is marked new (flashes on every screen that
#: shows it, whether it came in a live update or in the first render of the page)
NEW_ORDER_SECONDS = 60

#: the stages in which a rider has the order (or is on the way to collect it)
ON_THE_ROAD = frozenset({"queued", "preparing", "baking", "ready", "out_for_delivery"})


@dataclass(frozen=True)
class Card:
    card: status.BoardEntry
    minutes: int
    lateness: str  # "", "late-amber", "late-red"
    action: str | None
    #: the latest delivery time promised to the customer
    promised: datetime | None = None
    #: minutes past that promise (0 when on time)
    late_minutes: int = 0
    #: seconds left to take the last kitchen move back (0: no undo)
    undo_seconds: int = 0
    #: seconds since payment when rendered (board.js ages the card from there)
    age_seconds: int = 0
    #: seconds from the render until the promised time (negative once past it)
    promise_in: int | None = None
    #: seconds left for which the card counts as a new order (0: not new)
    new_for: int = 0

    @property
    def tracked(self) -> bool:
        """Whether the card can run late (board.js keeps its late level current)."""
        return self.card.status in ON_THE_ROAD

    @property
    def rider_label(self) -> str:
        """The rider's name only while a rider has the order."""
        if self.card.status not in ON_THE_ROAD:
            return ""
        if self.card.rider and self.card.courier_status == "assigned":
            return N_("Rider %(name)s", name=Verbatim(self.card.rider))
        if self.card.courier_status in ("unassigned", "requested"):
            return N_("Finding a rider")
        return ""

    @property
    def late_label(self) -> str:
        if self.lateness == "late-red":
            return N_("Very late: %(minutes)s min", minutes=self.late_minutes)
        if self.lateness == "late-amber":
            if self.late_minutes:
                return N_("Late: %(minutes)s min", minutes=self.late_minutes)
            return N_("Running late")
        return ""


def _card(card: status.BoardEntry, now: datetime, settings: Settings, stats: status.Stats) -> Card:
    """Lateness in two levels against the promise made at payment (kept on the card):
    amber once past it (or past the amber minutes), red once well past it (or past the
    red minutes)."""
    age = int((now - card.paid_at).total_seconds()) if card.paid_at else 0
    minutes = age // 60
    promised = card.promised_by or (
        status.promised_by(card.paid_at, stats) if card.paid_at else None
    )
    late_minutes = max(0, int((now - promised).total_seconds() // 60)) if promised else 0
    past_promise = promised is not None and now > promised
    red_after = settings.shop.late_red_minutes - settings.shop.late_amber_minutes
    lateness = ""
    if card.status in ON_THE_ROAD:
        if minutes >= settings.shop.late_red_minutes or (
            past_promise and late_minutes >= red_after
        ):
            lateness = "late-red"
        elif minutes >= settings.shop.late_amber_minutes or past_promise:
            lateness = "late-amber"
    following = FORWARD.get(DeliveryStatus(card.status))
    return Card(
        card,
        minutes,
        lateness,
        ACTION_LABELS.get(following) if following else None,
        promised=promised,
        late_minutes=late_minutes,
        undo_seconds=_undo_seconds(card, now),
        age_seconds=age,
        promise_in=int((promised - now).total_seconds()) if promised else None,
        new_for=max(0, NEW_ORDER_SECONDS - age) if card.status == DeliveryStatus.queued else 0,
    )


def _undo_seconds(card: status.BoardEntry, now: datetime) -> int:
    history = card.history or []
    if DeliveryStatus(card.status) not in UNDO or not history:
        return 0
    if history[-1]["status"] != card.status:
        return 0
    moved_at = datetime.fromisoformat(history[-1]["at"])
    return max(0, int(UNDO_SECONDS - (now - moved_at).total_seconds()))


async def board_context(
    db: AsyncSession, settings: Settings, breakers: PartnerBreakers
) -> dict[str, Any]:
    now = utcnow()
    stats = await status.stage_stats(db, settings.shop.stage_minutes)
    on_board = await status.board_cards(db)
    cards = [_card(c, now, settings, stats) for c in on_board.entries]
    shop = settings.shop
    states: list[BreakerState] = await breakers.states()
    return {
        "columns": [
            (s.value, label, [c for c in cards if c.card.status == s]) for s, label in COLUMNS
        ],
        "breakers": states,
        "not_shown": on_board.not_shown,
        # the two late levels, for board.js to age the cards between renders
        "late_minutes": (shop.late_amber_minutes, shop.late_red_minutes),
        # work that stopped moving (the watchdog), so staff see it where they work
        "stalled": await operations.stalled(db, settings.pipeline, now),
    }


#: per web process: the board's columns being rendered, by app and language
BOARD_RENDERS: SharedWork[tuple[int, str], str] = SharedWork()


class BoardPages(Controller):
    opt = access("staff")
    path = "/staff"

    @get("/board")
    async def board(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[AsyncSession],
        staff: NamedDependency[Principal],
        settings: NamedDependency[Settings],
        breakers: NamedDependency[PartnerBreakers],
    ) -> Any:
        return page(request, "delivery/board.html", **await board_context(db, settings, breakers))

    @get("/board/columns")
    async def columns(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[AsyncSession],
        staff: NamedDependency[Principal],
        settings: NamedDependency[Settings],
        breakers: NamedDependency[PartnerBreakers],
    ) -> Any:
        """The board's body alone, for the periodic refresh that keeps the timers moving."""
        return page(
            request, "delivery/_board_columns.html", **await board_context(db, settings, breakers)
        )

    @get("/board/stream")
    async def stream(
        self,
        request: Request[Any, Any, Any],
        staff: NamedDependency[Principal],
        settings: NamedDependency[Settings],
        breakers: NamedDependency[PartnerBreakers],
        session_factory: NamedDependency[async_sessionmaker[AsyncSession]],
        broadcaster: NamedDependency[Broadcaster],
    ) -> ServerSentEvent:
        template = fragment(request, "delivery/_board_columns.html")

        async def for_everyone() -> str:
            async with read_only(session_factory) as db:
                return template.for_everyone(**await board_context(db, settings, breakers))

        async def render(_: object) -> ServerSentEventMessage:
            # every staff screen on this process woken by the same change shares one
            # read and one render (in its language); each gets its own CSRF token
            now = broadcaster.delivered
            key = (id(session_factory), current_locale())  # per app (tests run several)
            html = await BOARD_RENDERS.get(key, now, now, for_everyone)
            return ServerSentEventMessage(data=template.for_viewer(html), event="board")

        return sse(channel_updates(broadcaster, status.BOARD_CHANNEL), render)

    @post("/deliveries/{delivery_id:uuid}/return/complete")
    async def complete_return(
        self,
        request: Request[Any, Any, Any],
        delivery_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        staff: NamedDependency[Principal],
        settings: NamedDependency[Settings],
        breakers: NamedDependency[PartnerBreakers],
    ) -> Any:
        """A return card's "Pizzas are back": the money goes back to the customer. (Its
        "Cancel return" is a refund use case: ``app.refund.returns``.)"""
        audit.record(db, staff, "return.complete", f"delivery:{delivery_id}")
        await service.confirm_return(db, delivery_id)
        if is_htmx(request):
            return page(
                request,
                "delivery/_board_columns.html",
                **await board_context(db, settings, breakers),
            )
        return redirect(request, "/staff/board")

    @post("/deliveries/{delivery_id:uuid}/undo")
    async def undo(
        self,
        request: Request[Any, Any, Any],
        delivery_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        staff: NamedDependency[Principal],
        settings: NamedDependency[Settings],
        breakers: NamedDependency[PartnerBreakers],
    ) -> Any:
        """The card's "Undo" for 30 s after a kitchen move."""
        audit.record(db, staff, "delivery.undo", f"delivery:{delivery_id}")
        await service.undo_last_move(db, delivery_id)
        if is_htmx(request):
            return page(
                request,
                "delivery/_board_columns.html",
                **await board_context(db, settings, breakers),
            )
        return redirect(request, "/staff/board")

    @post("/deliveries/{delivery_id:uuid}/advance")
    async def advance(
        self,
        request: Request[Any, Any, Any],
        delivery_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        staff: NamedDependency[Principal],
        settings: NamedDependency[Settings],
        breakers: NamedDependency[PartnerBreakers],
    ) -> Any:
        """A card's move button; the form says which stage the card showed, so a double
        click moves one stage and the second click is told the card already moved."""
        expected = str((await request.form()).get("from") or "") or None
        audit.record(db, staff, "delivery.advance", f"delivery:{delivery_id}")
        try:
            await service.advance(db, delivery_id, expected)
        except Conflict as exc:
            if not is_htmx(request):
                raise
            await db.rollback()
            notice = exc.detail
            return page(
                request,
                "delivery/_board_columns.html",
                notice=notice,
                **await board_context(db, settings, breakers),
            )
        if is_htmx(request):
            return page(
                request,
                "delivery/_board_columns.html",
                **await board_context(db, settings, breakers),
            )
        return redirect(request, "/staff/board")
