"""Who the client is: the TCP peer, or what a trusted proxy says in ``X-Forwarded-For``.

Only peers listed in ``FORWARDED_ALLOW_IPS`` (addresses or networks; ``*`` trusts every
peer, for a platform whose only way in is its load balancer) may name the client. The
header is read from the right: each trusted hop vouches for the one before it, and the
first address not in the list is the client. Anyone else's header is ignored, so a
client cannot pick its own rate-limit key.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from litestar.connection import ASGIConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def trusted_networks(allowed: tuple[str, ...]) -> tuple[Network, ...] | None:
    """The parsed list (``None``: trust everyone); a malformed entry stops the process."""
    if "*" in allowed:
        return None
    return tuple(ipaddress.ip_network(item, strict=False) for item in allowed)


def _trusted(address: str, networks: tuple[Network, ...] | None) -> bool:
    if networks is None:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(connection: ASGIConnection[Any, Any, Any, Any], allowed: tuple[str, ...]) -> str:
    """The client's address as far as the trusted proxies in ``allowed`` can tell."""
    peer = connection.client.host if connection.client else "unknown"
    if not allowed:
        return peer
    networks = trusted_networks(allowed)
    if not _trusted(peer, networks):
        return peer
    hops = [
        hop.strip()
        for header in connection.headers.getall("x-forwarded-for", [])
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
        peer = hop
    return peer
