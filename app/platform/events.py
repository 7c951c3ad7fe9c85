"""The event envelope that travels from the outbox to every subscriber, and the base of
every event contract.

Each context declares the events it emits in ``app/<context>/events.py``, one
``DomainEvent`` per event with typed payload fields. The outbox stores the event's wire
name (``TYPE``, the class name unless it says otherwise) and its payload as JSON with
camelCase keys, exactly as rows written before the contracts existed, so old rows still
route and decode. Subscribers turn the envelope back into the contract with
``Event.as_``.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

import msgspec

from app.platform.failures import BadPayload

E = TypeVar("E", bound="DomainEvent")


class DomainEvent(msgspec.Struct, kw_only=True, rename="camel"):
    """One event contract. ``VERSION`` is the contract's version: a change a consumer
    could trip over (a field removed, retyped or newly required) needs a new version and a
    new committed schema (``docs/events``), never an edit of the old one."""

    #: the name in the outbox and in the relay's routes
    TYPE: ClassVar[str]
    #: what kind of aggregate emits it (the outbox row's ``aggregate_type``)
    AGGREGATE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    #: nobody but the read side reacts to it (the status projector), on purpose
    PROJECTION_ONLY: ClassVar[bool] = False
    #: a shared shape several events extend (a snapshot), never emitted itself
    ABSTRACT: ClassVar[bool] = False

    #: the aggregate's version after the change (the projector keeps the newest)
    version: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "TYPE" not in cls.__dict__:
            cls.TYPE = cls.__name__
        cls.ABSTRACT = bool(cls.__dict__.get("ABSTRACT", False))

    @classmethod
    def wire_names(cls) -> frozenset[str]:
        """The wire names this contract can be read from: its own and its subclasses'."""
        names = set() if cls.ABSTRACT else {cls.TYPE}
        for sub in cls.__subclasses__():
            names |= sub.wire_names()
        return frozenset(names)

    def payload(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


class WrongEvent(BadPayload):
    """An envelope read as a contract it does not carry (a wiring mistake, permanent)."""


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """A domain event as subscribers receive it (a plain JSON-able job argument)."""

    id: UUID
    type: str
    aggregate_type: str
    aggregate_id: str
    correlation_id: str
    causation_id: str | None
    occurred_at: datetime
    payload: dict[str, Any]

    def to_job_arg(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]

    @classmethod
    def from_job_arg(cls, raw: dict[str, Any]) -> Event:
        return msgspec.convert(raw, cls)

    def as_(self, contract: builtins.type[E]) -> E:
        """The typed event this envelope carries, read as ``contract`` (or a base it
        shares with others, like a snapshot)."""
        if self.type not in contract.wire_names():
            raise WrongEvent(f"{self.type} is not a {contract.__name__}")
        try:
            return msgspec.convert(self.payload, contract)
        except msgspec.ValidationError as exc:
            raise WrongEvent(f"{self.type}: {exc}") from exc
