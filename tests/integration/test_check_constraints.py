"""The database refuses rows the state machines would never write: an unknown status, a
negative amount, a quantity out of range (migration ``check_constraints``)."""

from __future__ import annotations

import importlib.util
import re
import uuid
from enum import StrEnum
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.coupon.models import CouponStatus
from app.delivery.models import CourierStatus, DeliveryStatus, ReturnPickupState
from app.ordering.models import MAX_QTY, Order, OrderStatus
from app.payment.models import PaymentStatus
from app.refund.models import RefundStatus
from tests.support.inproc import place

Factory = async_sessionmaker[AsyncSession]
MIGRATION = next(Path("alembic/versions").glob("*_check_constraints.py"))

pytestmark = pytest.mark.usefixtures("sandbox_url")


def _migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_constraints", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "enum"),
    [
        ("ck_orders_status", OrderStatus),
        ("ck_payments_status", PaymentStatus),
        ("ck_deliveries_status", DeliveryStatus),
        ("ck_deliveries_courier_status", CourierStatus),
        ("ck_return_pickups_state", ReturnPickupState),
        ("ck_coupons_status", CouponStatus),
        ("ck_refunds_status", RefundStatus),
    ],
)
async def test_each_status_check_allows_exactly_its_enum(
    session_factory: Factory, name: str, enum: type[StrEnum]
) -> None:
    """A status added to an enum needs a migration that widens its CHECK: read from the
    migrated database, so a later migration that widened one counts."""
    async with session_factory() as session:
        condition = await session.scalar(
            text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :name"),
            {"name": name},
        )
    assert condition is not None, name
    allowed = set(re.findall(r"'([^']*)'", condition))
    assert allowed == {member.value for member in enum}


def test_the_quantity_range_is_the_one_the_shop_accepts() -> None:
    condition = next(c for _, n, c in _migration().CHECKS if n == "ck_order_lines_qty")
    assert condition == f"qty BETWEEN 1 AND {MAX_QTY}"


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE ordering.orders SET status = 'lost' WHERE id = :id",
        "UPDATE ordering.orders SET total_amount = -1 WHERE id = :id",
        "UPDATE ordering.order_lines SET qty = 0 WHERE order_id = :id",
        f"UPDATE ordering.order_lines SET qty = {MAX_QTY + 1} WHERE order_id = :id",
        "UPDATE payment.payments SET amount = -5 WHERE order_id = :id",
        "UPDATE payment.payments SET status = 'maybe' WHERE order_id = :id",
    ],
)
async def test_a_row_the_state_machine_would_never_write_is_refused(
    session_factory: Factory, change: str
) -> None:
    order_id: uuid.UUID = await place(session_factory)
    async with session_factory() as session:
        with pytest.raises(IntegrityError, match="violates check constraint"):
            await session.execute(text(change), {"id": order_id})


async def test_a_loaded_status_is_its_enum_member_and_a_stranger_never_reaches_the_database(
    session_factory: Factory,
) -> None:
    """The model types the column with its enum: a row comes back as the member (so ``is``
    and the machine work on it directly), and a string the enum does not know is refused
    while the UPDATE is built; the CHECK above is the guard for writers that bypass the
    models, not the first line."""
    order_id = await place(session_factory)
    async with session_factory() as session:
        order = await session.get(Order, order_id)
        assert order is not None
        assert order.status is OrderStatus.placed
        selected = await session.scalar(select(Order.status).where(Order.id == order_id))
        assert selected is OrderStatus.placed

        sent: list[str] = []

        def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            sent.append(statement)

        engine = session.get_bind()  # the sync engine under the async one
        event.listen(engine, "before_cursor_execute", record)
        try:
            order.status = "lost"  # type: ignore[assignment]
            with pytest.raises(StatementError) as refused:
                await session.flush()
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert isinstance(refused.value.orig, LookupError)
        assert not [s for s in sent if s.lstrip().upper().startswith("UPDATE")]
    async with session_factory() as session:
        again = await session.get(Order, order_id)
        assert again is not None and again.status is OrderStatus.placed
