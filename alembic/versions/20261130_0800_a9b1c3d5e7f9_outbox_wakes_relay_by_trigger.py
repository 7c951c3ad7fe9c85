"""the outbox wakes the relay itself

Revision ID: a9b1c3d5e7f9
Revises: f4b8d0e2a3c5
Create Date: 2026-11-30 08:00:00

Every event recorded used to send its own ``SELECT pg_notify('outbox', '')``: a round
trip per event, four or five per order, from whichever process recorded it. A statement
trigger on the outbox sends the same notification inside the INSERT: still
transactional (the relay is woken only if the transaction commits, once per
transaction however many events it recorded), and nobody can forget it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a9b1c3d5e7f9"
down_revision: str | None = "f4b8d0e2a3c5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION platform.outbox_wake_relay() RETURNS trigger
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


def downgrade() -> None:
    op.execute("DROP TRIGGER outbox_wake_relay ON platform.outbox")
    op.execute("DROP FUNCTION platform.outbox_wake_relay()")
