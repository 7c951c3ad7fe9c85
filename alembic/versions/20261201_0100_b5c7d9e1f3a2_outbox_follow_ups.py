"""outbox follow-ups: the subscribers the recording process runs itself

Revision ID: b5c7d9e1f3a2
Revises: a9b1c3d5e7f9
Create Date: 2026-12-01 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "b5c7d9e1f3a2"
down_revision: str | None = "a9b1c3d5e7f9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # nullable, no default: adding it rewrites nothing, and rows of older releases have none
    op.add_column(
        "outbox",
        sa.Column("follow_ups", postgresql.ARRAY(sa.String(length=100)), nullable=True),
        schema="platform",
    )


def downgrade() -> None:
    op.drop_column("outbox", "follow_ups", schema="platform")
