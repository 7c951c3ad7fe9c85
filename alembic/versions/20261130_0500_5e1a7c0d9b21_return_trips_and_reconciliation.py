"""return trips per refund, partner reconciliation

Revision ID: 5e1a7c0d9b21
Revises: 7a1c0de5e001
Create Date: 2026-11-30 02:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "5e1a7c0d9b21"
down_revision: str | None = "7a1c0de5e001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "deliveries",
        sa.Column("return_trip", sa.Integer(), server_default="0", nullable=False),
        schema="delivery",
    )
    op.add_column(
        "deliveries",
        sa.Column("partner_checked_at", sa.DateTime(timezone=True), nullable=True),
        schema="delivery",
    )
    op.create_table(
        "return_pickups",
        sa.Column("delivery_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("trip", sa.Integer(), nullable=False),
        sa.Column("partner_ref", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("delivery_id", "trip"),
        schema="delivery",
    )
    op.create_index(
        "ix_return_pickups_partner_ref",
        "return_pickups",
        ["partner_ref"],
        unique=True,
        schema="delivery",
    )
    op.create_index(
        "ix_return_pickups_state",
        "return_pickups",
        ["state", "updated_at"],
        unique=False,
        schema="delivery",
    )
    # Deliveries that had a return so far had exactly one trip.
    op.execute(
        "UPDATE delivery.deliveries SET return_trip = 1 "
        "WHERE return_partner_ref IS NOT NULL OR status IN ('return_requested', 'returned')"
    )
    op.execute(
        "INSERT INTO delivery.return_pickups "
        "(delivery_id, trip, partner_ref, state, created_at, updated_at) "
        "SELECT id, 1, return_partner_ref, "
        "CASE WHEN status = 'return_requested' THEN 'active' ELSE 'finished' END, "
        "updated_at, updated_at FROM delivery.deliveries WHERE return_partner_ref IS NOT NULL"
    )
    op.drop_index("ix_deliveries_return_partner_ref", table_name="deliveries", schema="delivery")
    op.drop_column("deliveries", "return_partner_ref", schema="delivery")


def downgrade() -> None:
    op.add_column(
        "deliveries",
        sa.Column("return_partner_ref", sa.String(length=100), nullable=True),
        schema="delivery",
    )
    op.create_index(
        "ix_deliveries_return_partner_ref",
        "deliveries",
        ["return_partner_ref"],
        unique=False,
        schema="delivery",
    )
    op.execute(
        "UPDATE delivery.deliveries d SET return_partner_ref = p.partner_ref "
        "FROM delivery.return_pickups p WHERE p.delivery_id = d.id AND p.trip = d.return_trip"
    )
    op.drop_index("ix_return_pickups_state", table_name="return_pickups", schema="delivery")
    op.drop_index("ix_return_pickups_partner_ref", table_name="return_pickups", schema="delivery")
    op.drop_table("return_pickups", schema="delivery")
    op.drop_column("deliveries", "partner_checked_at", schema="delivery")
    op.drop_column("deliveries", "return_trip", schema="delivery")
