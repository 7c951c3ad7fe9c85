"""Explicit state machines: every state change of an aggregate goes through one."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Generic, TypeVar

from app.platform.errors import IllegalTransition
from app.platform.i18n import N_

S = TypeVar("S", bound=StrEnum)


class StateMachine(Generic[S]):
    def __init__(self, name: str, transitions: Mapping[S, frozenset[S]]) -> None:
        self.name = name
        self.transitions = transitions

    def can(self, current: S, target: S) -> bool:
        return target in self.transitions.get(current, frozenset())

    def check(self, current: S, target: S) -> S:
        """Return ``target`` when the move is legal, raise 409 otherwise."""
        if not self.can(current, target):
            raise IllegalTransition(
                N_(
                    "%(what)s cannot go from %(current)s to %(target)s",
                    what=self.name,
                    current=current.value,
                    target=target.value,
                )
            )
        return target
