"""a dead letter can be discarded, with the reason

Revision ID: d7e9f1a3b5c4
Revises: c6d8e0f2a4b3
Create Date: 2026-12-04 01:00:00

A job parked for good whose effect is no longer wanted (the order was settled by hand)
used to wait forever, keeping its event unfinished and the dead-letter alert firing. An
admin may now give it up: the letter keeps when and why.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "d7e9f1a3b5c4"
down_revision: str | None = "c6d8e0f2a4b3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "dead_letters",
        sa.Column("discarded_at", sa.DateTime(timezone=True), nullable=True),
        schema="platform",
    )
    op.add_column(
        "dead_letters", sa.Column("discard_reason", sa.Text(), nullable=True), schema="platform"
    )


def downgrade() -> None:
    op.drop_column("dead_letters", "discard_reason", schema="platform")
    op.drop_column("dead_letters", "discarded_at", schema="platform")
