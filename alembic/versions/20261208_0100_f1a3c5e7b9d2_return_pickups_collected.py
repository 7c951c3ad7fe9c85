"""a return trip's pickup can be collected: the rider has the pizzas

Revision ID: f1a3c5e7b9d2
Revises: e8f0a2b4c6d7
Create Date: 2026-12-08 01:00:00

Once the partner's rider has collected a refund's pizzas, the refund can no longer be
withdrawn (nor its return cancelled): the pizzas are on their way back to the shop, and a
withdrawal then left the customer with neither the pizzas nor the money. Our record of
the trip says so with the state ``collected``.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "f1a3c5e7b9d2"
down_revision: str | None = "e8f0a2b4c6d7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE, _CHECK = "delivery.return_pickups", "ck_return_pickups_state"


def _states(*states: str) -> None:
    """The check again with these states, NOT VALID as the first checks were: it holds
    for every row written from now on without reading the table's old rows (which only
    ever held the states of the check it replaces)."""
    listed = ", ".join(repr(state) for state in states)
    op.execute(f"ALTER TABLE {_TABLE} DROP CONSTRAINT {_CHECK}")
    op.execute(
        f"ALTER TABLE {_TABLE} ADD CONSTRAINT {_CHECK} CHECK (state IN ({listed})) NOT VALID"
    )


def upgrade() -> None:
    _states("active", "collected", "withdrawn", "finished")


def downgrade() -> None:
    op.execute("UPDATE delivery.return_pickups SET state = 'active' WHERE state = 'collected'")
    _states("active", "withdrawn", "finished")
