"""CHECK constraints: every status column holds one of its enum's values, amounts are
never negative, quantities stay in range

Revision ID: d2f6b8c0e1a3
Revises: 5e1a7c0d9b21
Create Date: 2026-11-30 06:00:00

The application's state machines already keep these; the database now refuses a row
that breaks them, whoever writes it. ``NOT VALID``: rows already there are not checked
(a shop that has run for a while keeps working); every new or changed row is.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "d2f6b8c0e1a3"
down_revision: str | None = "5e1a7c0d9b21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _in(column: str, *values: str) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


#: (schema.table, constraint name, condition)
CHECKS: tuple[tuple[str, str, str], ...] = (
    (
        "ordering.orders",
        "ck_orders_status",
        _in("status", "placed", "paid", "payment_failed", "cancelled", "fulfilled", "refunded"),
    ),
    ("ordering.orders", "ck_orders_total_amount", "total_amount >= 0"),
    ("ordering.orders", "ck_orders_discount_amount", "discount_amount >= 0"),
    ("ordering.order_lines", "ck_order_lines_qty", "qty BETWEEN 1 AND 20"),
    ("ordering.order_lines", "ck_order_lines_unit_price", "unit_price >= 0"),
    (
        "payment.payments",
        "ck_payments_status",
        _in("status", "pending", "captured", "failed", "voided", "refunded"),
    ),
    ("payment.payments", "ck_payments_amount", "amount >= 0"),
    (
        "delivery.deliveries",
        "ck_deliveries_status",
        _in(
            "status",
            "queued",
            "preparing",
            "baking",
            "ready",
            "out_for_delivery",
            "delivered",
            "cancelled",
            "return_requested",
            "returned",
        ),
    ),
    (
        "delivery.deliveries",
        "ck_deliveries_courier_status",
        _in("courier_status", "unassigned", "requested", "assigned", "withdrawn"),
    ),
    (
        "delivery.return_pickups",
        "ck_return_pickups_state",
        _in("state", "active", "withdrawn", "finished"),
    ),
    (
        "coupon.coupons",
        "ck_coupons_status",
        _in("status", "issued", "redeemed", "revoked", "expired"),
    ),
    ("coupon.coupons", "ck_coupons_discount", "discount >= 0"),
    (
        "refund.refunds",
        "ck_refunds_status",
        _in("status", "requested", "completed", "cancelled"),
    ),
    ("refund.refunds", "ck_refunds_amount", "amount >= 0"),
)


def upgrade() -> None:
    for table, name, condition in CHECKS:
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")


def downgrade() -> None:
    for table, name, _ in reversed(CHECKS):
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
