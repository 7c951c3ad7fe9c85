"""Client addresses: ``X-Forwarded-For`` counts only from trusted proxies."""

from __future__ import annotations

import pytest
from litestar.connection import ASGIConnection

from app.platform.clients import client_address
from app.platform.csrf import _equal


def _connection(peer: str, *forwarded: str) -> ASGIConnection[object, object, object, object]:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    scope = {"type": "http", "client": (peer, 1234), "headers": headers}
    return ASGIConnection(scope)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("peer", "forwarded", "allowed", "client"),
    [
        ("127.0.0.1", ["6.6.6.6"], (), "127.0.0.1"),  # nobody trusted (the default)
        ("10.0.0.5", ["6.6.6.6"], ("127.0.0.1",), "10.0.0.5"),  # not a trusted peer
        ("10.0.0.5", ["6.6.6.6"], ("10.0.0.0/8",), "6.6.6.6"),
        ("10.0.0.5", ["1.1.1.1, 6.6.6.6, 10.0.0.9"], ("10.0.0.0/8",), "6.6.6.6"),  # rightmost
        ("10.0.0.5", ["1.1.1.1", "6.6.6.6"], ("10.0.0.0/8",), "6.6.6.6"),  # two headers
        ("10.0.0.5", ["garbage"], ("10.0.0.0/8",), "garbage"),
        ("10.0.0.5", [], ("10.0.0.0/8",), "10.0.0.5"),
        ("10.0.0.5", ["6.6.6.6"], ("*",), "6.6.6.6"),
    ],
)
def test_client_address(
    peer: str, forwarded: list[str], allowed: tuple[str, ...], client: str
) -> None:
    assert client_address(_connection(peer, *forwarded), allowed) == client


def test_constant_time_compare_handles_any_text() -> None:
    assert _equal("ä", "ä") and not _equal("a", "b")
