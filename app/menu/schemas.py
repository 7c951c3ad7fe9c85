"""Menu API shapes."""

from __future__ import annotations

import msgspec


class PizzaView(msgspec.Struct, rename="camel"):
    id: int
    name: str
    description: str
    price: int
    currency: str
