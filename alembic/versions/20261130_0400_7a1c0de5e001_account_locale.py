"""account language: the signed-in user's choice of Korean or English

Revision ID: 7a1c0de5e001
Revises: c9e5a3f4d6b7
Create Date: 2026-11-30 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "7a1c0de5e001"
down_revision: str | None = "c9e5a3f4d6b7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("locale", sa.String(length=8), nullable=True), schema="accounts"
    )


def downgrade() -> None:
    op.drop_column("users", "locale", schema="accounts")
