"""One list of queues (``app.platform.queues``) serves the relay's routes, the workers and
the metrics: a subscriber on a queue no worker drains would wait forever, unseen."""

from __future__ import annotations

import pytest

from app.platform.queues import QUEUES
from app.subscriptions import WIRING
from workers import settings_for


def test_every_subscriber_names_a_queue_a_worker_drains() -> None:
    named = {subscriber.queue for subscribers in WIRING.values() for subscriber in subscribers}
    assert named <= set(QUEUES), f"no worker for {sorted(named - set(QUEUES))}"


@pytest.mark.parametrize("queue", QUEUES)
def test_every_queue_has_its_worker(queue: str) -> None:
    assert settings_for(queue).queue_name == queue
