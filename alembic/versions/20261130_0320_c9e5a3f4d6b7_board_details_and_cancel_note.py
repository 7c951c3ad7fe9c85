"""board card details (customer, phone, note, total, stage history); refund cancel note

Revision ID: c9e5a3f4d6b7
Revises: b8d4f2e3c5a6
Create Date: 2026-11-30 02:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "c9e5a3f4d6b7"
down_revision: str | None = "b8d4f2e3c5a6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in (
        sa.Column("customer_name", sa.String(100), nullable=True),
        sa.Column("phone", sa.String(40), nullable=True),
        sa.Column("note", sa.String(300), nullable=True),
        sa.Column("total_amount", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column(
            "history", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False
        ),
    ):
        op.add_column("board_cards", column, schema="status")
    op.add_column(
        "refunds", sa.Column("cancel_note", sa.String(500), nullable=True), schema="refund"
    )
    op.add_column(
        "refund_views", sa.Column("cancel_note", sa.String(500), nullable=True), schema="status"
    )


def downgrade() -> None:
    op.drop_column("refund_views", "cancel_note", schema="status")
    op.drop_column("refunds", "cancel_note", schema="refund")
    for name in ("history", "currency", "total_amount", "note", "phone", "customer_name"):
        op.drop_column("board_cards", name, schema="status")
