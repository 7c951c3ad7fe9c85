"""Menu use cases. Other contexts read pizzas only through these functions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from babel.numbers import get_currency_precision
from sqlalchemy import Integer, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.menu.models import Pizza
from app.platform.driver import Statement
from app.platform.i18n import N_
from app.platform.uow import complete


@dataclass(frozen=True)
class MenuItem:
    """What another context may know about a pizza."""

    id: int
    name: str
    description: str
    price: int


#: slug, name, description, price in won, price in cents (any currency with two decimals);
#: names and descriptions are catalog messages, so the menu reads in Korean too
DEMO_MENU: tuple[tuple[str, str, str, int, int], ...] = (
    (
        "margherita",
        N_("Margherita"),
        N_("San Marzano tomato, fior di latte, basil, olive oil."),
        15_900,
        950,
    ),
    (
        "marinara",
        N_("Marinara"),
        N_("Tomato, garlic, oregano, extra virgin olive oil. No cheese."),
        13_900,
        800,
    ),
    ("diavola", N_("Diavola"), N_("Tomato, mozzarella, spicy salami, chilli oil."), 18_900, 1200),
    (
        "quattro-formaggi",
        N_("Quattro Formaggi"),
        N_("Mozzarella, gorgonzola, fontina, parmesan."),
        19_900,
        1250,
    ),
    (
        "capricciosa",
        N_("Capricciosa"),
        N_("Tomato, mozzarella, ham, mushrooms, artichokes, olives."),
        20_900,
        1300,
    ),
    ("funghi", N_("Funghi"), N_("Tomato, mozzarella, roasted mushrooms, thyme."), 17_900, 1100),
    (
        "prosciutto-rucola",
        N_("Prosciutto e Rucola"),
        N_("Mozzarella, parma ham, rocket, parmesan."),
        22_900,
        1400,
    ),
    (
        "verdure",
        N_("Verdure"),
        N_("Tomato, mozzarella, grilled courgette, peppers, aubergine."),
        18_500,
        1150,
    ),
)


def demo_price(won: int, cents: int, currency: str) -> int:
    """A demo pizza's price in minor units of the shop's currency (won have none)."""
    if currency == "KRW":
        return won
    if get_currency_precision(currency) == 0:
        return cents // 100
    return cents


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
    rows = await _FIND.fetch(session, {"ids": sorted(wanted)})
    return {
        row["id"]: MenuItem(row["id"], row["name"], row["description"], row["price"])
        for row in rows
    }


#: the ids bound as one array (``= ANY($1)``): one statement for any number of ids; read
#: for every order and basket, so on the driver (``app.platform.driver``)
_FIND = Statement(
    select(Pizza.id, Pizza.name, Pizza.description, Pizza.price).where(
        Pizza.id == any_(bindparam("ids", type_=ARRAY(Integer))), Pizza.available
    )
)


async def load_demo_menu(session: AsyncSession, currency: str = "KRW") -> None:
    """Insert or refresh the demo pizzas, priced in ``currency``; safe at every start."""
    for position, (slug, label, blurb, won, cents) in enumerate(DEMO_MENU, start=1):
        name, description, price = str(label), str(blurb), demo_price(won, cents, currency)
        stmt = insert(Pizza).values(
            id=position, slug=slug, name=name, description=description, price=price
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[Pizza.slug],
                set_={"name": name, "description": description, "price": price},
            )
        )
    await complete(session)
