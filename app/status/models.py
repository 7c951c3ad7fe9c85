"""Status: read models (CQRS views) built from events, never from other contexts' tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.platform.db import Base, utcnow


class OrderView(Base):
    """The order as a customer sees it, stored as the API document itself.

    ``version`` grows by one per applied change and is the SSE event id;
    ``sources`` remembers the last applied version of each aggregate, keyed
    ``"<source>:<aggregate id>"`` (an order can have several refunds), so late or
    repeated events are ignored.
    """

    __tablename__ = "order_views"
    __table_args__ = (
        Index("ix_order_views_customer_created", "customer_id", "created_at"),
        {"schema": "status"},
    )

    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    version: Mapped[int] = mapped_column(Integer)
    sources: Mapped[dict[str, int]] = mapped_column(JSONB)
    doc: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BoardCard(Base):
    """One delivery as the staff board shows it (kept from delivery events only)."""

    __tablename__ = "board_cards"
    __table_args__ = (Index("ix_board_cards_status", "status", "updated_at"), {"schema": "status"})

    delivery_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    status: Mapped[str] = mapped_column(String(20))
    courier_status: Mapped[str] = mapped_column(String(20))
    rider: Mapped[str | None] = mapped_column(String(100))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    address: Mapped[str] = mapped_column(String(300))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: when it reached the customer: the newest deliveries' stages make the estimates
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: the delivery time promised at payment, copied from the order's view (None: a card
    #: from before it was kept, whose promise is computed from today's statistics)
    promised_by: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: what the kitchen needs on the card, copied from the order's view
    customer_name: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(String(300))
    total_amount: Mapped[int | None] = mapped_column(Integer)
    currency: Mapped[str | None] = mapped_column(String(3))
    #: the stages reached, ``[{"status", "at"}]`` (the last one can be undone for a while)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default="[]")


class RefundView(Base):
    """A refund as customers and staff look it up (by reason, date, words in the text)."""

    __tablename__ = "refund_views"
    __table_args__ = (
        Index("ix_refund_views_reason_created", "reason_code", "created_at"),
        Index("ix_refund_views_customer_created", "customer_id", "created_at"),
        {"schema": "status"},
    )

    refund_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    customer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    status: Mapped[str] = mapped_column(String(20))
    reason_code: Mapped[str] = mapped_column(String(40))
    reason_label: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    cancelled_by: Mapped[str | None] = mapped_column(String(20))
    #: why the shop cancelled the return, in words the customer reads
    cancel_note: Mapped[str | None] = mapped_column(String(500))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
