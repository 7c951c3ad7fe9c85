"""delivery partner's estimate

Revision ID: b8d4f2e3c5a6
Revises: a7c3e1d2b4f5
Create Date: 2026-11-30 02:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "b8d4f2e3c5a6"
down_revision: str | None = "a7c3e1d2b4f5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "deliveries",
        sa.Column("partner_eta", sa.DateTime(timezone=True), nullable=True),
        schema="delivery",
    )


def downgrade() -> None:
    op.drop_column("deliveries", "partner_eta", schema="delivery")
