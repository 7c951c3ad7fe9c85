"""event pipeline: finished events, dead letters, reconciler log, process heartbeats

Revision ID: 5e1f0a7d2c91
Revises: c04d877b6bb6
Create Date: 2026-11-30 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "5e1f0a7d2c91"
down_revision: str | None = "c04d877b6bb6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("enqueued_at", sa.DateTime(timezone=True)), schema="platform")
    op.add_column("outbox", sa.Column("finished_at", sa.DateTime(timezone=True)), schema="platform")
    # Events published before this release are taken as finished (their jobs ran or are
    # in Redis); from now on PostgreSQL decides.
    op.execute(
        "UPDATE platform.outbox SET enqueued_at = published_at, finished_at = published_at"
        " WHERE published_at IS NOT NULL"
    )
    op.create_index(
        "ix_outbox_unfinished",
        "outbox",
        ["seq"],
        unique=False,
        schema="platform",
        postgresql_where=sa.text("published_at IS NOT NULL AND finished_at IS NULL"),
    )
    op.create_index("ix_inbox_event_id", "inbox", ["event_id"], schema="platform")
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("handler", sa.String(length=100), nullable=False),
        sa.Column("queue", sa.String(length=50), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("event", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("error_type", sa.String(length=200), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retried_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("handler", "event_id", name=op.f("uq_dead_letters_handler")),
        schema="platform",
    )
    op.create_table(
        "pipeline_actions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=True),
        sa.Column("handler", sa.String(length=100), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_actions")),
        schema="platform",
    )
    op.create_index(
        op.f("ix_platform_pipeline_actions_at"), "pipeline_actions", ["at"], schema="platform"
    )
    op.create_table(
        "processes",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("state", sa.String(length=30), nullable=False),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_processes")),
        schema="platform",
    )
    op.create_index(
        op.f("ix_platform_processes_seen_at"), "processes", ["seen_at"], schema="platform"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_platform_processes_seen_at"), table_name="processes", schema="platform")
    op.drop_table("processes", schema="platform")
    op.drop_index(
        op.f("ix_platform_pipeline_actions_at"), table_name="pipeline_actions", schema="platform"
    )
    op.drop_table("pipeline_actions", schema="platform")
    op.drop_table("dead_letters", schema="platform")
    op.drop_index("ix_inbox_event_id", table_name="inbox", schema="platform")
    op.drop_index(
        "ix_outbox_unfinished",
        table_name="outbox",
        schema="platform",
        postgresql_where=sa.text("published_at IS NOT NULL AND finished_at IS NULL"),
    )
    op.drop_column("outbox", "finished_at", schema="platform")
    op.drop_column("outbox", "enqueued_at", schema="platform")
