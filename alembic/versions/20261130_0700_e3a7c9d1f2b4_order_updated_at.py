"""orders remember when they last changed, like every other aggregate

Revision ID: e3a7c9d1f2b4
Revises: d2f6b8c0e1a3
Create Date: 2026-11-30 07:00:00

Every aggregate now shares one base (``app.platform.aggregate``) that stamps
``updated_at`` on each change; the orders table was the one without the column. Rows
already there take their ``created_at``: the last change we can vouch for.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "e3a7c9d1f2b4"
down_revision: str | None = "d2f6b8c0e1a3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        schema="ordering",
    )
    op.execute("UPDATE ordering.orders SET updated_at = created_at")
    op.alter_column("orders", "updated_at", nullable=False, schema="ordering")


def downgrade() -> None:
    op.drop_column("orders", "updated_at", schema="ordering")
