"""Accounts: who may use the shop and in which role."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, String
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.platform.db import Base, utcnow


class Role(StrEnum):
    customer = "customer"
    staff = "staff"
    admin = "admin"


class User(Base):
    __tablename__ = "users"
    __table_args__ = {"schema": "accounts"}

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default=Role.customer.value)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: the language this person chose with the switch (``ko`` / ``en``); None: not chosen
    locale: Mapped[str | None] = mapped_column(String(8), nullable=True, default=None)
    #: sessions and API tokens issued before this instant are refused (password change,
    #: "sign out everywhere")
    sessions_valid_after: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
