"""A transaction tells each live channel once (``app.platform.uow.once_per_channel``)."""

from __future__ import annotations

from app.platform.uow import once_per_channel


def test_a_capture_tells_each_channel_once_naming_its_event_types_in_order() -> None:
    order, customer = "order:7", "customer:3"
    told = [
        (order, "PaymentCaptured"),
        (order, "OrderPaid"),
        (customer, "OrderPaid"),
        (order, "DeliveryCreated"),
        (customer, "DeliveryCreated"),
        ("board", "CourierRequested"),
        (order, "CourierRequested"),
        (customer, "CourierRequested"),
        (order, "OrderPaid"),  # told twice: named once
    ]
    assert once_per_channel(told) == [
        (order, "PaymentCaptured,OrderPaid,DeliveryCreated,CourierRequested"),
        (customer, "OrderPaid,DeliveryCreated,CourierRequested"),
        ("board", "CourierRequested"),
    ]


def test_nothing_told_is_nothing_published() -> None:
    assert once_per_channel([]) == []
