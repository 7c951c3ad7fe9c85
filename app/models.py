"""Imports every context's models so that ``Base.metadata`` knows all tables (Alembic)."""

from app.accounts import models as accounts
from app.audit import models as audit
from app.coupon import models as coupon
from app.delivery import models as delivery
from app.menu import models as menu
from app.ordering import models as ordering
from app.payment import models as payment
from app.platform import outbox as platform
from app.platform.db import Base
from app.refund import models as refund
from app.status import models as status

__all__ = [
    "Base",
    "accounts",
    "audit",
    "coupon",
    "delivery",
    "menu",
    "ordering",
    "payment",
    "platform",
    "refund",
    "status",
]
