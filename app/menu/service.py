"""Menu use cases. Other contexts read pizzas only through these functions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.menu.models import Pizza


@dataclass(frozen=True)
class MenuItem:
    """What another context may know about a pizza."""

    id: int
    name: str
    description: str
    price: int


DEMO_MENU: tuple[tuple[str, str, str, int], ...] = (
    ("margherita", "Margherita", "San Marzano tomato, fior di latte, basil, olive oil.", 950),
    ("marinara", "Marinara", "Tomato, garlic, oregano, extra virgin olive oil. No cheese.", 800),
    ("diavola", "Diavola", "Tomato, mozzarella, spicy salami, chilli oil.", 1200),
    ("quattro-formaggi", "Quattro Formaggi", "Mozzarella, gorgonzola, fontina, parmesan.", 1250),
    ("capricciosa", "Capricciosa", "Tomato, mozzarella, ham, mushrooms, artichokes, olives.", 1300),
    ("funghi", "Funghi", "Tomato, mozzarella, roasted mushrooms, thyme.", 1100),
    ("prosciutto-rucola", "Prosciutto e Rucola", "Mozzarella, parma ham, rocket, parmesan.", 1400),
    ("verdure", "Verdure", "Tomato, mozzarella, grilled courgette, peppers, aubergine.", 1150),
)


def _item(pizza: Pizza) -> MenuItem:
    return MenuItem(id=pizza.id, name=pizza.name, description=pizza.description, price=pizza.price)


async def list_menu(session: AsyncSession) -> list[MenuItem]:
    rows = await session.scalars(select(Pizza).where(Pizza.available).order_by(Pizza.id))
    return [_item(p) for p in rows]


async def find_pizzas(session: AsyncSession, ids: Iterable[int]) -> dict[int, MenuItem]:
    """Available pizzas by id; ids that are unknown or unavailable are simply absent."""
    wanted = {i for i in ids if 0 < i < 2**31}  # ids beyond the column's range exist nowhere
    if not wanted:
        return {}
    rows = await session.scalars(select(Pizza).where(Pizza.id.in_(wanted), Pizza.available))
    return {p.id: _item(p) for p in rows}


async def load_demo_menu(session: AsyncSession) -> None:
    """Insert or refresh the demo pizzas; safe to run at every start."""
    for position, (slug, name, description, price) in enumerate(DEMO_MENU, start=1):
        stmt = insert(Pizza).values(
            id=position, slug=slug, name=name, description=description, price=price
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[Pizza.slug],
                set_={"name": name, "description": description, "price": price},
            )
        )
    await session.commit()
