"""board cards remember when the delivery reached the customer

Revision ID: f4b8d0e2a3c5
Revises: e3a7c9d1f2b4
Create Date: 2026-11-30 07:10:00

The delivery window is estimated from how long each stage took in recent deliveries.
The read side now takes those from its own board cards (their stage history, newest
deliveries first) instead of asking the delivery context, so it needs the time each
card's delivery was delivered. Cards already there take it from their history.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "f4b8d0e2a3c5"
down_revision: str | None = "e3a7c9d1f2b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "board_cards",
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        schema="status",
    )
    op.execute(
        """
        UPDATE status.board_cards SET delivered_at = (
            SELECT (stage ->> 'at')::timestamptz
              FROM jsonb_array_elements(history) AS stage
             WHERE stage ->> 'status' = 'delivered'
             LIMIT 1
        )
        """
    )


def downgrade() -> None:
    op.drop_column("board_cards", "delivered_at", schema="status")
