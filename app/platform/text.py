"""Text that PostgreSQL can store, and text that others can read as it was written.

PostgreSQL refuses NUL characters in ``text`` columns, so user input carrying them must be
turned away as bad input (422), never reach the database. Text one person types for
another to read (a delivery note for the kitchen, a refund's reason for staff, a name)
must also carry no explicit direction controls: they are invisible, and an override makes
the rest of the line read backwards wherever it is shown (the board, the refunds table, an
exported CSV opened in a spreadsheet), so staff would read something other than what the
customer's words say ("Trojan Source" in a form field)."""

from __future__ import annotations

#: embeddings, overrides and isolates (LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI); the
#: marks people's keyboards insert (LRM, RLM) are not among them
DIRECTION_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def storable(text: str) -> bool:
    return "\x00" not in text


def plain(text: str) -> bool:
    """Storable, and shown to others as it was written (no direction controls)."""
    return storable(text) and DIRECTION_CONTROLS.isdisjoint(text)
