"""the outbox wakes the relay only for rows it has to hand over

Revision ID: c6d8e0f2a4b3
Revises: b5c7d9e1f3a2
Create Date: 2026-12-01 02:00:00

A unit of work writes an event that leaves the relay nothing to do (every subscriber
reacted in its transaction or follows it up, or it has none) as already published. The
statement trigger now looks at the rows the INSERT brought (a transition table) and
sends its NOTIFY only when one of them is unpublished: two of an order's three outbox
writes no longer wake the relay for an empty batch.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c6d8e0f2a4b3"
down_revision: str | None = "b5c7d9e1f3a2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION platform.outbox_wake_relay() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM recorded WHERE published_at IS NULL) THEN
                PERFORM pg_notify('outbox', '');
            END IF;
            RETURN NULL;
        END;
        $$
        """
    )
    op.execute("DROP TRIGGER outbox_wake_relay ON platform.outbox")
    op.execute(
        """
        CREATE TRIGGER outbox_wake_relay AFTER INSERT ON platform.outbox
        REFERENCING NEW TABLE AS recorded
        FOR EACH STATEMENT EXECUTE FUNCTION platform.outbox_wake_relay()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER outbox_wake_relay ON platform.outbox")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION platform.outbox_wake_relay() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('outbox', '');
            RETURN NULL;
        END;
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER outbox_wake_relay AFTER INSERT ON platform.outbox
        FOR EACH STATEMENT EXECUTE FUNCTION platform.outbox_wake_relay()
        """
    )
