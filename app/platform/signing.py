"""HMAC-SHA256 webhook signatures, Stripe style.

The header value is ``t=<unix seconds>,v1=<hex hmac>`` where the HMAC covers
``f"{t}.{raw body}"``. The timestamp is signed too, so a captured request cannot be
replayed later than the tolerance allows. Several ``v1`` entries are accepted (a sender
rotating its secret signs with both); unknown entries are ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SCHEME = "v1"


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header value for ``body``, signed now unless ``timestamp`` is given."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},{SCHEME}={_digest(secret, t, body)}"


#: a Unix time in seconds has 10 digits until the year 2286; more is garbage, whatever its
#: length (``int`` of a very long one raises, which must not become a 500)
MAX_TIMESTAMP_DIGITS = 12


def _parse(header: str) -> tuple[int, list[str]] | None:
    """``(timestamp, signatures)`` from a header value, or ``None`` if it is garbled."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            return None
        if key == "t":
            if timestamp is not None or not (value.isascii() and value.isdigit()):
                return None
            if len(value) > MAX_TIMESTAMP_DIGITS:  # int() refuses past 4,300 digits
                return None
            timestamp = int(value)
        elif key == SCHEME and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    tolerance_seconds: int = 300,
    now: int | None = None,
) -> bool:
    """Whether ``header`` is a valid signature of ``body`` made within the tolerance.

    Missing or garbled headers, a wrong secret, an altered body and a timestamp more than
    ``tolerance_seconds`` away from ``now`` (either direction) all give ``False``.
    """
    if not header:
        return False
    parsed = _parse(header)
    if parsed is None:
        return False
    timestamp, signatures = parsed
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = _digest(secret, timestamp, body).encode()
    # Compare every candidate (no early exit) so timing says nothing about which matched.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
    return matched
