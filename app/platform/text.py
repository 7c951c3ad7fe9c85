"""Text that PostgreSQL can store: it refuses NUL characters in ``text`` columns, so user
input carrying them must be turned away as bad input (422), never reach the database."""

from __future__ import annotations


def storable(text: str) -> bool:
    return "\x00" not in text
