"""second security pass: card tokens instead of card numbers, revocable sessions,
idempotency fingerprints

Revision ID: 5ec0a11d2b7e
Revises: 5e1f0a7d2c91
Create Date: 2026-11-30 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "5ec0a11d2b7e"
down_revision: str | None = "5e1f0a7d2c91"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Card numbers never stay with the shop: the column and every number in it go. A
    # payment still pending without a token is failed by the capture job (order again).
    op.drop_column("payments", "card_number", schema="payment")
    op.add_column(
        "payments", sa.Column("payment_method", sa.String(100), nullable=True), schema="payment"
    )
    op.add_column(
        "payments",
        sa.Column("card_brand", sa.String(20), server_default="card", nullable=False),
        schema="payment",
    )
    op.add_column(
        "users",
        sa.Column(
            "sessions_valid_after",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        schema="accounts",
    )
    op.execute("UPDATE accounts.users SET sessions_valid_after = password_changed_at")
    op.add_column(
        "orders",
        sa.Column("request_fingerprint", sa.String(64), nullable=True),
        schema="ordering",
    )


def downgrade() -> None:
    op.drop_column("orders", "request_fingerprint", schema="ordering")
    op.drop_column("users", "sessions_valid_after", schema="accounts")
    op.drop_column("payments", "card_brand", schema="payment")
    op.drop_column("payments", "payment_method", schema="payment")
    op.add_column(
        "payments", sa.Column("card_number", sa.String(19), nullable=True), schema="payment"
    )
