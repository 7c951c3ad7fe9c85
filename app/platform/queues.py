"""The job queues: one per context that reacts to events, each drained by its own worker
(``pizzeria worker QUEUE``).

Named here, below everything, because the relay's subscribers, the workers, the metrics
(each queue's depth) and the launcher all need the same list, and none of them may
import another to get it.
"""

from __future__ import annotations

QUEUES = ("payment", "ordering", "delivery", "coupon", "refund", "status")
