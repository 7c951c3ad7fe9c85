"""HttpCourierGateway against the sandbox courier: outcomes and failure sorting."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar

from app.delivery.gateway import (
    CourierEvent,
    CourierRejected,
    CourierUnavailable,
    HttpCourierGateway,
    PickupOutcome,
)
from app.platform.partner_http import HttpxPartner, partner_client
from app.platform.settings import PartnerSettings, Settings
from app.sandbox.app import create_sandbox_app
from app.sandbox.courier import CourierConfig, Rider, WebhookEvent, courier_of
from tests.support.inloop import asgi_client, serve

CALLBACK = "http://127.0.0.1:9/webhooks/courier"


@pytest.fixture
async def sandbox() -> AsyncIterator[Litestar]:
    """A sandbox whose riders only move by hand (no webhooks to a shop that is not there)."""
    app = create_sandbox_app(CourierConfig(autopilot=False, retry_seconds=0.01, max_attempts=1))
    yield app
    await courier_of(app.state).aclose()


@pytest.fixture
async def control(sandbox: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """A plain client on the sandbox, for turning knobs and inspecting pickups."""
    async with asgi_client(sandbox) as client:
        yield client


@pytest.fixture
async def gateway(sandbox: Litestar) -> AsyncIterator[HttpCourierGateway]:
    gateway = HttpCourierGateway(HttpxPartner(asgi_client(sandbox)))
    yield gateway
    await gateway.aclose()


@pytest.fixture
async def served_sandbox(sandbox: Litestar) -> AsyncIterator[str]:
    """The sandbox on a real 127.0.0.1 socket: ASGITransport cannot time out."""
    async with serve(sandbox) as url:
        yield url


async def request(gateway: HttpCourierGateway, key: str = "k1") -> PickupOutcome:
    return await gateway.request_pickup(
        reference="del-1", address="Via Roma 1", callback_url=CALLBACK, idempotency_key=key
    )


async def set_knobs(control: httpx.AsyncClient, **knobs: Any) -> None:
    response = await control.put("/sandbox/knobs/courier", json=knobs)
    assert response.status_code == 200


async def pickups(control: httpx.AsyncClient) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = (
        await control.get("/sandbox/courier/pickups", params={"reference": "del-1"})
    ).json()
    return result


async def test_requested(gateway: HttpCourierGateway, control: httpx.AsyncClient) -> None:
    outcome = await request(gateway)

    assert outcome.status == "requested"
    assert outcome.rider is None
    assert outcome.partner_ref.startswith("pk_")
    [recorded] = await pickups(control)
    assert recorded["id"] == outcome.partner_ref
    assert recorded["address"] == "Via Roma 1"
    assert recorded["callbackUrl"] == CALLBACK
    assert recorded["bookedReady"] is False, "a delivery waits for the kitchen's ready"


async def test_a_booking_says_when_the_goods_are_ready_already(
    gateway: HttpCourierGateway, control: httpx.AsyncClient
) -> None:
    await gateway.request_pickup(
        reference="del-1",
        address="Via Roma 1",
        callback_url=CALLBACK,
        idempotency_key="k1",
        ready=True,
    )

    [recorded] = await pickups(control)
    assert recorded["bookedReady"] is True
    assert recorded["operations"] == ["request"]


async def test_retry_with_same_key_is_the_same_pickup(
    gateway: HttpCourierGateway, control: httpx.AsyncClient
) -> None:
    first = await request(gateway)
    second = await request(gateway)
    assert second == first
    assert len(await pickups(control)) == 1


async def test_rider_name_once_assigned(
    gateway: HttpCourierGateway, control: httpx.AsyncClient
) -> None:
    first = await request(gateway, key="k1")
    response = await control.post(
        f"/sandbox/courier/pickups/{first.partner_ref}/events", json={"type": "rider_assigned"}
    )
    assert response.status_code == 200
    assert response.json()["delivered"] is False  # nobody listens at CALLBACK

    fetched = (await control.get(f"/courier/v1/pickups/{first.partner_ref}")).json()
    assert fetched["status"] == "assigned"
    assert isinstance(fetched["rider"]["name"], str)


async def test_ready_and_cancel(gateway: HttpCourierGateway, control: httpx.AsyncClient) -> None:
    outcome = await request(gateway)

    await gateway.mark_ready(partner_ref=outcome.partner_ref, idempotency_key="r1")
    await gateway.mark_ready(partner_ref=outcome.partner_ref, idempotency_key="r1")  # safe retry
    await gateway.cancel_pickup(partner_ref=outcome.partner_ref, idempotency_key="c1")
    await gateway.cancel_pickup(partner_ref=outcome.partner_ref, idempotency_key="c1")

    [recorded] = await pickups(control)
    assert recorded["status"] == "cancelled"
    assert recorded["operations"] == ["request", "ready", "cancel"]


async def test_cancel_after_pickup_is_rejected(
    gateway: HttpCourierGateway, control: httpx.AsyncClient
) -> None:
    outcome = await request(gateway)
    await control.post(
        f"/sandbox/courier/pickups/{outcome.partner_ref}/events", json={"type": "picked_up"}
    )

    with pytest.raises(CourierRejected) as caught:
        await gateway.cancel_pickup(partner_ref=outcome.partner_ref, idempotency_key="c1")

    assert caught.value.status_code == 409
    assert "picked_up" in caught.value.detail


async def test_unknown_pickup_is_rejected(gateway: HttpCourierGateway) -> None:
    with pytest.raises(CourierRejected) as caught:
        await gateway.mark_ready(partner_ref="pk_nope", idempotency_key="r1")
    assert caught.value.status_code == 404


async def test_key_reuse_with_other_reference_is_rejected(gateway: HttpCourierGateway) -> None:
    await request(gateway)
    with pytest.raises(CourierRejected) as caught:
        await gateway.request_pickup(
            reference="del-2", address="Via Roma 1", callback_url=CALLBACK, idempotency_key="k1"
        )
    assert caught.value.status_code == 409


async def test_down_is_unavailable(gateway: HttpCourierGateway, control: httpx.AsyncClient) -> None:
    await set_knobs(control, down=True)

    with pytest.raises(CourierUnavailable, match="503"):
        await request(gateway)
    with pytest.raises(CourierUnavailable):
        await gateway.mark_ready(partner_ref="pk_any", idempotency_key="r1")
    with pytest.raises(CourierUnavailable):
        await gateway.cancel_pickup(partner_ref="pk_any", idempotency_key="c1")
    assert await pickups(control) == []


async def test_error_rate_one_is_unavailable(
    gateway: HttpCourierGateway, control: httpx.AsyncClient
) -> None:
    await set_knobs(control, errorRate=1.0)

    with pytest.raises(CourierUnavailable, match="500"):
        await request(gateway)
    with pytest.raises(CourierUnavailable):
        await gateway.cancel_pickup(partner_ref="pk_any", idempotency_key="c1")
    assert await pickups(control) == []


@pytest.mark.parametrize("status", [408, 429, 502])
async def test_transient_statuses_are_unavailable(status: int) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"detail": "slow down"})

    client = HttpxPartner(
        httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://courier")
    )
    async with HttpCourierGateway(client) as gateway:
        with pytest.raises(CourierUnavailable, match=str(status)):
            await request(gateway)


async def test_unreadable_success_is_unavailable() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, content=b"<html>")

    client = HttpxPartner(
        httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://courier")
    )
    async with HttpCourierGateway(client) as gateway:
        with pytest.raises(CourierUnavailable, match="unreadable"):
            await request(gateway)


async def test_timeout_is_unavailable(served_sandbox: str, control: httpx.AsyncClient) -> None:
    await set_knobs(control, latencyMs=300)
    client = partner_client(served_sandbox, 0.05)
    async with HttpCourierGateway(client) as gateway:
        with pytest.raises(CourierUnavailable, match="timed out"):
            await request(gateway)

        await set_knobs(control, latencyMs=0)
        outcome = await request(gateway, key="k2")
        assert outcome.status == "requested"


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = partner_client(f"http://127.0.0.1:{port}", 1.0)
    async with HttpCourierGateway(client) as gateway:
        with pytest.raises(CourierUnavailable, match="unreachable"):
            await request(gateway)


async def test_from_settings(served_sandbox: str) -> None:
    settings = Settings(partners=PartnerSettings(courier_url=served_sandbox, timeout_seconds=2.0))
    async with HttpCourierGateway.from_settings(settings) as gateway:
        outcome = await request(gateway)
    assert outcome.status == "requested"


def test_courier_event_decodes_what_the_sandbox_sends() -> None:
    sent = WebhookEvent(
        event_id="ev_1",
        type="rider_assigned",
        pickup_id="pk_1",
        reference="del-1",
        rider=Rider("Giulia R."),
        occurred_at="2025-01-01T12:00:00+00:00",
    )

    event = msgspec.json.decode(msgspec.json.encode(sent), type=CourierEvent)

    assert event.event_id == "ev_1"
    assert event.type == "rider_assigned"
    assert event.pickup_id == "pk_1"
    assert event.rider is not None
    assert event.rider.name == "Giulia R."


async def test_pickup_status_follows_the_partner(
    gateway: HttpCourierGateway, control: httpx.AsyncClient
) -> None:
    """How reconciliation learns what lost webhooks would have said."""
    outcome = await request(gateway)
    assert (await gateway.pickup_status(partner_ref=outcome.partner_ref)).status == "requested"
    for event in ("rider_assigned", "picked_up", "delivered"):
        sent = await control.post(
            f"/sandbox/courier/pickups/{outcome.partner_ref}/events", json={"type": event}
        )
        assert sent.status_code == 200
    status = await gateway.pickup_status(partner_ref=outcome.partner_ref)
    assert status.status == "delivered" and status.rider is not None
    with pytest.raises(CourierRejected):
        await gateway.pickup_status(partner_ref="pk_unknown")
    await set_knobs(control, down=True)
    with pytest.raises(CourierUnavailable):
        await gateway.pickup_status(partner_ref=outcome.partner_ref)
