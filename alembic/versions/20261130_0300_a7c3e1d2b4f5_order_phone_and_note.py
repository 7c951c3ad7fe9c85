"""order phone and delivery note

Revision ID: a7c3e1d2b4f5
Revises: 5ec0a11d2b7e
Create Date: 2026-11-30 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "a7c3e1d2b4f5"
down_revision: str | None = "5ec0a11d2b7e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("phone", sa.String(40), nullable=True), schema="ordering")
    op.add_column("orders", sa.Column("note", sa.String(300), nullable=True), schema="ordering")


def downgrade() -> None:
    op.drop_column("orders", "note", schema="ordering")
    op.drop_column("orders", "phone", schema="ordering")
