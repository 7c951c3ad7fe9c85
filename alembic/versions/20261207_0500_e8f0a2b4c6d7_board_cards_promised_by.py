"""board cards keep the delivery time promised at payment

Revision ID: e8f0a2b4c6d7
Revises: d7e9f1a3b5c4
Create Date: 2026-12-07 05:00:00

The promise was computed again on every render from the stage statistics of the moment,
so it moved whenever recent deliveries did: waiting orders turned "late" on the board
(and for their customers) without anything happening to them. The order's view now keeps
the promise made at payment (``promisedBy`` in its document) and its board card a copy.
Cards already there keep computing it as before (NULL).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "e8f0a2b4c6d7"
down_revision: str | None = "d7e9f1a3b5c4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "board_cards",
        sa.Column("promised_by", sa.DateTime(timezone=True), nullable=True),
        schema="status",
    )


def downgrade() -> None:
    op.drop_column("board_cards", "promised_by", schema="status")
