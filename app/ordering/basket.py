"""The basket lives in the server-side session until checkout turns it into an order."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.menu import service as menu
from app.ordering.models import MAX_LINES, MAX_QTY
from app.platform.i18n import N_

BASKET = "basket"


@dataclass(frozen=True)
class BasketLine:
    pizza_id: int
    name: str
    qty: int
    unit_price: int

    @property
    def amount(self) -> int:
        return self.qty * self.unit_price


MAX_PIZZA_ID = 2**31 - 1


def read_basket(request: Request[Any, Any, Any]) -> dict[str, int]:
    raw = request.session.get(BASKET) or {}
    return {
        str(k): int(v) for k, v in raw.items() if str(k).isdigit() and 0 < int(k) <= MAX_PIZZA_ID
    }


def write_basket(request: Request[Any, Any, Any], basket: dict[str, int]) -> None:
    request.session[BASKET] = {k: v for k, v in basket.items() if v > 0}


def add_to_basket(request: Request[Any, Any, Any], pizza_id: int, qty: int = 1) -> str | None:
    """Add ``qty`` (less, when negative) of a pizza; what an order may hold caps it. The
    reason, when not all of it went in (the basket says so: a button that silently did
    nothing looked broken)."""
    if not 0 < pizza_id <= MAX_PIZZA_ID:
        return None
    basket = read_basket(request)
    key = str(pizza_id)
    if key not in basket and len(basket) >= MAX_LINES:
        return N_("An order holds at most %(n)s different pizzas.", n=MAX_LINES)
    wanted = basket.get(key, 0) + qty
    basket[key] = max(0, min(MAX_QTY, wanted))
    write_basket(request, basket)
    if wanted > MAX_QTY:
        return N_("An order holds at most %(n)s of one pizza.", n=MAX_QTY)
    return None


async def basket_lines(request: Request[Any, Any, Any], db: AsyncSession) -> list[BasketLine]:
    """The basket priced from the current menu; pizzas no longer sold drop out."""
    basket = read_basket(request)
    if not basket:
        return []
    pizzas = await menu.find_pizzas(db, (int(k) for k in basket))
    return [
        BasketLine(pizza_id=pid, name=pizzas[pid].name, qty=qty, unit_price=pizzas[pid].price)
        for pid, qty in ((int(k), v) for k, v in basket.items())
        if pid in pizzas
    ]


def basket_seen(lines: Sequence[BasketLine]) -> str:
    """What a checkout page showed, as a short fingerprint: the pizzas, how many, and
    their prices. The form sends it back, so a basket that changed meanwhile (another
    tab, a new price) is shown again with its total before anything is charged."""
    shown = ",".join(
        f"{line.pizza_id}x{line.qty}@{line.unit_price}"
        for line in sorted(lines, key=lambda line: line.pizza_id)
    )
    return hashlib.sha256(shown.encode()).hexdigest()[:16]
