"""The sandbox courier behaves like a real delivery agency: pickups, signed webhooks, riders."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import httpx
import msgspec
import pytest
from litestar import Litestar, Request, Response, post

from app.platform.signing import verify
from app.sandbox.app import create_sandbox_app
from app.sandbox.courier import CourierConfig, courier_of
from tests.support.inloop import serve

PICKUPS = "/courier/v1/pickups"
SECRET = "test-courier-secret"
STEP = 0.05


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Received:
    body: bytes
    signature: str | None

    @property
    def event(self) -> dict[str, Any]:
        result: dict[str, Any] = msgspec.json.decode(self.body)
        return result


@dataclass
class Receiver:
    """Our side of the webhook: records every request, answers queued statuses (else 200)."""

    url: str = ""
    calls: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def types(self) -> list[str]:
        return [call.event["type"] for call in self.calls]

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.calls) < count:
            assert loop.time() < deadline, f"expected {count} webhooks, got {self.types()}"
            await asyncio.sleep(0.01)
        return self.calls


def receiver_app(receiver: Receiver) -> Litestar:
    @post("/webhooks/courier", status_code=200)
    async def webhook(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = await request.body()
        receiver.calls.append(Received(body, request.headers.get("X-Courier-Signature")))
        status = receiver.statuses.pop(0) if receiver.statuses else 200
        return Response(b"", status_code=status)

    return Litestar(route_handlers=[webhook], openapi_config=None)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    async with serve(receiver_app(receiver)) as base_url:
        receiver.url = f"{base_url}/webhooks/courier"
        yield receiver


def asgi_client(app: Litestar) -> httpx.AsyncClient:
    """An in-process client; httpx's ASGI app type is narrower than Litestar's signature."""
    transport = httpx.ASGITransport(app=cast(Any, app))
    return httpx.AsyncClient(transport=transport, base_url="http://sandbox")


@contextlib.asynccontextmanager
async def open_sandbox(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client inside the app's lifespan, so shutdown stops the riders.

    Enter it in the test itself: anyio wants the lifespan left in the task that entered
    it, and pytest-asyncio tears fixtures down in another task.
    """
    async with app.lifespan(), asgi_client(app) as c:
        yield c


def manual_config() -> CourierConfig:
    return CourierConfig(webhook_secret=SECRET, autopilot=False, retry_seconds=0.01)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A sandbox with the autopilot off: pickups move only by manual events."""
    app = create_sandbox_app(manual_config())
    async with asgi_client(app) as c:
        yield c
    await courier_of(app.state).aclose()


SandboxFactory = Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def autopilot(monkeypatch: pytest.MonkeyPatch) -> SandboxFactory:
    """A sandbox configured from the environment, riders on autopilot with 50 ms steps."""
    monkeypatch.setenv("SANDBOX_COURIER_AUTOPILOT", "1")
    monkeypatch.setenv("SANDBOX_COURIER_STEP_SECONDS", str(STEP))
    monkeypatch.setenv("SANDBOX_COURIER_RETRY_SECONDS", "0.01")
    monkeypatch.setenv("COURIER_WEBHOOK_SECRET", SECRET)
    return lambda: open_sandbox(create_sandbox_app())


def pickup_body(callback_url: str, reference: str = "del-1") -> dict[str, Any]:
    return {"reference": reference, "address": "Via Roma 1, Napoli", "callbackUrl": callback_url}


async def request_pickup(
    client: httpx.AsyncClient, callback_url: str, key: str = "k1", reference: str = "del-1"
) -> httpx.Response:
    return await client.post(
        PICKUPS, json=pickup_body(callback_url, reference), headers={"Idempotency-Key": key}
    )


async def new_pickup(client: httpx.AsyncClient, callback_url: str) -> str:
    response = await request_pickup(client, callback_url)
    assert response.status_code == 201, response.text
    pickup_id: str = response.json()["id"]
    return pickup_id


async def action(client: httpx.AsyncClient, pickup_id: str, name: str, key: str) -> httpx.Response:
    return await client.post(f"{PICKUPS}/{pickup_id}/{name}", headers={"Idempotency-Key": key})


async def send_event(client: httpx.AsyncClient, pickup_id: str, event_type: str) -> dict[str, Any]:
    response = await client.post(
        f"/sandbox/courier/pickups/{pickup_id}/events", json={"type": event_type}
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def pickups_for(client: httpx.AsyncClient, reference: str = "del-1") -> list[dict[str, Any]]:
    response = await client.get("/sandbox/courier/pickups", params={"reference": reference})
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def assert_signed(call: Received, secret: str = SECRET) -> None:
    assert verify(secret, call.body, call.signature), call.signature


# --------------------------------------------------------------------------- partner API


async def test_request_pickup_and_replay(client: httpx.AsyncClient) -> None:
    first = await request_pickup(client, "http://127.0.0.1:9/hook")
    replay = await request_pickup(client, "http://127.0.0.1:9/hook")

    assert first.status_code == 201
    body = first.json()
    assert body["id"].startswith("pk_")
    assert body == {"id": body["id"], "reference": "del-1", "status": "requested", "rider": None}
    assert replay.status_code == 201
    assert replay.content == first.content
    [view] = await pickups_for(client)
    assert view["id"] == body["id"]
    assert view["operations"] == ["request"]
    assert view["events"] == []
    fetched = await client.get(f"{PICKUPS}/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == body


async def test_a_booking_is_found_by_its_idempotency_key_even_when_the_answer_is_late(
    client: httpx.AsyncClient,
) -> None:
    """``answerDelayMs``: the pickup is booked before its answer leaves, and the key tells
    which pickup it became (a client that timed out, or died, asks there)."""
    await client.put("/sandbox/knobs/courier", json={"answerDelayMs": 300})
    answered = asyncio.ensure_future(request_pickup(client, "http://127.0.0.1:9/hook", key="k-l"))
    await asyncio.sleep(0.1)
    assert not answered.done()
    [booked] = await pickups_for(client)
    found = await client.get(f"{PICKUPS}/by-idempotency-key/k-l")
    assert found.status_code == 200 and found.json()["id"] == booked["id"]
    assert (await answered).json()["id"] == booked["id"]
    await client.post(f"{PICKUPS}/{booked['id']}/cancel", headers={"Idempotency-Key": "k-c"})
    again = await client.get(f"{PICKUPS}/by-idempotency-key/k-l")
    assert again.json()["status"] == "cancelled"  # as it is now, not as first answered
    missing = await client.get(f"{PICKUPS}/by-idempotency-key/never-used")
    assert missing.status_code == 404


async def test_key_reuse_and_bad_requests(client: httpx.AsyncClient) -> None:
    await request_pickup(client, "http://127.0.0.1:9/hook")
    reused = await request_pickup(client, "http://127.0.0.1:9/hook", reference="del-2")
    no_key = await client.post(PICKUPS, json=pickup_body("http://127.0.0.1:9/hook"))
    bad_url = await request_pickup(client, "ftp://example.com", key="k2")
    empty = await client.post(PICKUPS, content=b"{}", headers={"Idempotency-Key": "k3"})

    assert reused.status_code == 409
    assert no_key.status_code == 400
    assert "Idempotency-Key" in no_key.json()["detail"]
    assert bad_url.status_code == 400
    assert empty.status_code == 400
    assert len(await pickups_for(client)) == 1
    assert await pickups_for(client, "del-2") == []
    assert (await client.get(f"{PICKUPS}/pk_nope")).status_code == 404
    assert (await action(client, "pk_nope", "ready", "r1")).status_code == 404
    assert (await action(client, "pk_nope", "cancel", "c1")).status_code == 404


async def test_ready_is_recorded_once(client: httpx.AsyncClient) -> None:
    pickup_id = await new_pickup(client, "http://127.0.0.1:9/hook")

    first = await action(client, pickup_id, "ready", "r1")
    replay = await action(client, pickup_id, "ready", "r1")
    again = await action(client, pickup_id, "ready", "r2")
    no_key = await client.post(f"{PICKUPS}/{pickup_id}/ready")

    assert first.status_code == replay.status_code == again.status_code == 200
    assert replay.content == first.content
    assert first.json()["status"] == "requested"
    assert no_key.status_code == 400
    [view] = await pickups_for(client)
    assert view["operations"] == ["request", "ready"]


async def test_cancel_is_replay_safe(client: httpx.AsyncClient) -> None:
    pickup_id = await new_pickup(client, "http://127.0.0.1:9/hook")

    first = await action(client, pickup_id, "cancel", "c1")
    replay = await action(client, pickup_id, "cancel", "c1")
    again = await action(client, pickup_id, "cancel", "c2")
    ready = await action(client, pickup_id, "ready", "r1")

    assert first.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert replay.content == first.content
    assert again.status_code == 200
    assert ready.status_code == 409
    [view] = await pickups_for(client)
    assert view["status"] == "cancelled"
    assert view["operations"] == ["request", "cancel"]


async def test_cancel_after_pickup_is_409(client: httpx.AsyncClient, receiver: Receiver) -> None:
    pickup_id = await new_pickup(client, receiver.url)
    await send_event(client, pickup_id, "rider_assigned")
    await send_event(client, pickup_id, "picked_up")

    response = await action(client, pickup_id, "cancel", "c1")
    replay = await action(client, pickup_id, "cancel", "c1")

    assert response.status_code == 409
    assert "picked_up" in response.json()["detail"]
    assert replay.status_code == 409
    [view] = await pickups_for(client)
    assert view["status"] == "picked_up"
    assert view["operations"] == ["request"]


# --------------------------------------------------------------------------- webhooks


async def test_manual_events_reach_receiver_signed(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    pickup_id = await new_pickup(client, receiver.url)

    results = [
        await send_event(client, pickup_id, kind)
        for kind in ("rider_assigned", "picked_up", "delivered")
    ]

    assert [r["delivered"] for r in results] == [True, True, True]
    assert [r["status"] for r in results] == [200, 200, 200]
    assert [call.event["eventId"] for call in receiver.calls] == [r["eventId"] for r in results]
    assert len({r["eventId"] for r in results}) == 3
    assert receiver.types() == ["rider_assigned", "picked_up", "delivered"]
    for call in receiver.calls:
        assert_signed(call)
        assert not verify("wrong-secret", call.body, call.signature)
    first = receiver.calls[0].event
    assert first["eventId"].startswith("ev_")
    assert first["pickupId"] == pickup_id
    assert first["reference"] == "del-1"
    assert isinstance(first["rider"]["name"], str)
    assert first["rider"]["name"].endswith(".")
    assert first["occurredAt"]
    assert set(first) == {
        "eventId",
        "type",
        "pickupId",
        "reference",
        "rider",
        "occurredAt",
        "estimatedDeliveryAt",
    }
    # the partner's own estimate comes with the rider, later than the event itself
    assert datetime.fromisoformat(first["estimatedDeliveryAt"]) > datetime.fromisoformat(
        first["occurredAt"]
    )
    fetched = (await client.get(f"{PICKUPS}/{pickup_id}")).json()
    assert fetched["status"] == "delivered"
    assert fetched["rider"] == first["rider"]
    [view] = await pickups_for(client)
    assert [e["type"] for e in view["events"]] == ["rider_assigned", "picked_up", "delivered"]
    assert all(e["delivered"] and e["attempts"] == 1 for e in view["events"])


async def test_manual_event_errors(client: httpx.AsyncClient) -> None:
    pickup_id = await new_pickup(client, "http://127.0.0.1:9/hook")
    unknown = await client.post(
        "/sandbox/courier/pickups/pk_nope/events", json={"type": "picked_up"}
    )
    bad_type = await client.post(
        f"/sandbox/courier/pickups/{pickup_id}/events", json={"type": "teleported"}
    )
    assert unknown.status_code == 404
    assert bad_type.status_code == 422


async def test_webhook_retried_on_5xx_with_same_event_id(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    pickup_id = await new_pickup(client, receiver.url)
    receiver.statuses = [500, 503]

    result = await send_event(client, pickup_id, "rider_assigned")

    assert result == {"delivered": True, "status": 200, "eventId": result["eventId"]}
    assert len(receiver.calls) == 3
    assert {call.event["eventId"] for call in receiver.calls} == {result["eventId"]}
    assert {call.body for call in receiver.calls} == {receiver.calls[0].body}
    for call in receiver.calls:
        assert_signed(call)
    [view] = await pickups_for(client)
    assert view["events"] == [
        {
            "eventId": result["eventId"],
            "type": "rider_assigned",
            "delivered": True,
            "status": 200,
            "attempts": 3,
        }
    ]


async def test_webhook_gives_up_after_a_few_attempts(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    pickup_id = await new_pickup(client, receiver.url)
    receiver.statuses = [500] * 10

    result = await send_event(client, pickup_id, "rider_assigned")

    assert result["delivered"] is False
    assert result["status"] == 500
    assert len(receiver.calls) == CourierConfig().max_attempts


async def test_webhook_4xx_is_not_retried(client: httpx.AsyncClient, receiver: Receiver) -> None:
    pickup_id = await new_pickup(client, receiver.url)
    receiver.statuses = [401]

    result = await send_event(client, pickup_id, "rider_assigned")

    assert result["delivered"] is False
    assert result["status"] == 401
    assert len(receiver.calls) == 1


async def test_unreachable_endpoint_is_retried_then_given_up(client: httpx.AsyncClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pickup_id = await new_pickup(client, f"http://127.0.0.1:{port}/webhooks/courier")

    result = await send_event(client, pickup_id, "rider_assigned")

    assert result["delivered"] is False
    assert result["status"] is None
    [view] = await pickups_for(client)
    assert view["events"][0]["attempts"] == CourierConfig().max_attempts
    assert view["status"] == "assigned"


# --------------------------------------------------------------------------- autopilot


async def test_autopilot_assigns_then_delivers_after_ready(
    autopilot: SandboxFactory, receiver: Receiver
) -> None:
    async with autopilot() as client:
        pickup_id = await new_pickup(client, receiver.url)

        [assigned] = await receiver.wait_for(1)
        assert assigned.event["type"] == "rider_assigned"
        await asyncio.sleep(STEP * 6)
        assert receiver.types() == ["rider_assigned"], "no pickup before the food is ready"
        assert (await client.get(f"{PICKUPS}/{pickup_id}")).json()["status"] == "assigned"

        assert (await action(client, pickup_id, "ready", "r1")).status_code == 200
        await receiver.wait_for(3)
        await asyncio.sleep(STEP * 4)

        assert receiver.types() == ["rider_assigned", "picked_up", "delivered"]
        for call in receiver.calls:
            assert_signed(call)
            assert call.event["pickupId"] == pickup_id
            assert call.event["rider"] == assigned.event["rider"]
        [view] = await pickups_for(client)
        assert view["status"] == "delivered"
        assert view["operations"] == ["request", "ready"]


async def test_autopilot_with_early_ready(autopilot: SandboxFactory, receiver: Receiver) -> None:
    async with autopilot() as client:
        pickup_id = await new_pickup(client, receiver.url)
        await action(client, pickup_id, "ready", "r1")

        await receiver.wait_for(3)

        assert receiver.types() == ["rider_assigned", "picked_up", "delivered"]


async def test_autopilot_collects_goods_booked_ready_without_a_ready_call(
    autopilot: SandboxFactory, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A return: the pizzas wait at the customer's, and the rider collects them on their
    own once there (``collect_seconds`` after being assigned), then brings them back."""
    monkeypatch.setenv("SANDBOX_COURIER_COLLECT_SECONDS", str(STEP * 8))
    async with autopilot() as client:
        response = await client.post(
            PICKUPS,
            json={**pickup_body(receiver.url), "ready": True},
            headers={"Idempotency-Key": "k1"},
        )
        assert response.status_code == 201, response.text
        pickup_id = response.json()["id"]

        await receiver.wait_for(1)
        await asyncio.sleep(STEP * 2)
        assert receiver.types() == ["rider_assigned"], "on the way to the customer's still"

        await receiver.wait_for(3)
        assert receiver.types() == ["rider_assigned", "picked_up", "delivered"]
        assert (await client.get(f"{PICKUPS}/{pickup_id}")).json()["status"] == "delivered"
        [view] = await pickups_for(client)
        assert view["operations"] == ["request"], "nobody said ready"
        assert view["bookedReady"] is True


async def test_a_pickup_booked_ready_waits_as_long_as_collecting_takes(
    autopilot: SandboxFactory, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests make collecting slower than any test: a return then stays with its rider
    assigned, as the tests that withdraw refunds need."""
    monkeypatch.setenv("SANDBOX_COURIER_COLLECT_SECONDS", "3600")
    async with autopilot() as client:
        await client.post(
            PICKUPS,
            json={**pickup_body(receiver.url), "ready": True},
            headers={"Idempotency-Key": "k1"},
        )
        await receiver.wait_for(1)
        await asyncio.sleep(STEP * 6)

        assert receiver.types() == ["rider_assigned"]


async def test_autopilot_retries_a_failed_webhook(
    autopilot: SandboxFactory, receiver: Receiver
) -> None:
    receiver.statuses = [500]
    async with autopilot() as client:
        await new_pickup(client, receiver.url)

        first, retry = await receiver.wait_for(2)

    assert first.body == retry.body
    assert first.event["type"] == "rider_assigned"


async def test_cancel_stops_autopilot(autopilot: SandboxFactory, receiver: Receiver) -> None:
    async with autopilot() as client:
        pickup_id = await new_pickup(client, receiver.url)
        cancelled = await action(client, pickup_id, "cancel", "c1")
        await asyncio.sleep(STEP * 6)

        assert cancelled.status_code == 200
        assert receiver.calls == []
        [view] = await pickups_for(client)
        assert view["status"] == "cancelled"
        assert view["rider"] is None


async def test_cancel_after_rider_assigned_stops_autopilot(
    autopilot: SandboxFactory, receiver: Receiver
) -> None:
    async with autopilot() as client:
        pickup_id = await new_pickup(client, receiver.url)
        await receiver.wait_for(1)
        assert (await action(client, pickup_id, "cancel", "c1")).status_code == 200
        assert (await action(client, pickup_id, "ready", "r1")).status_code == 409
        await asyncio.sleep(STEP * 6)

        assert receiver.types() == ["rider_assigned"]


async def test_autopilot_cancel_is_409_once_picked_up(
    autopilot: SandboxFactory, receiver: Receiver
) -> None:
    async with autopilot() as client:
        pickup_id = await new_pickup(client, receiver.url)
        await action(client, pickup_id, "ready", "r1")

        async def picked_up() -> bool:
            return "picked_up" in receiver.types()

        await eventually(picked_up)
        assert (await action(client, pickup_id, "cancel", "c1")).status_code == 409
        await receiver.wait_for(3)


async def test_reset_forgets_pickups_and_stops_riders(
    autopilot: SandboxFactory, receiver: Receiver
) -> None:
    async with autopilot() as client:
        pickup_id = await new_pickup(client, receiver.url)
        await client.put("/sandbox/knobs/courier", json={"latencyMs": 1})

        assert (await client.post("/sandbox/reset")).status_code == 200
        await asyncio.sleep(STEP * 6)

        assert receiver.calls == []
        assert await pickups_for(client) == []
        assert (await client.get(f"{PICKUPS}/{pickup_id}")).status_code == 404
        assert (await client.get("/sandbox/knobs")).json()["courier"]["latencyMs"] == 0
        again = await request_pickup(client, receiver.url)
        assert again.status_code == 201
        assert again.json()["id"] != pickup_id
        await receiver.wait_for(1)


async def test_shutdown_stops_riders(autopilot: SandboxFactory, receiver: Receiver) -> None:
    async with autopilot() as client:
        await new_pickup(client, receiver.url)
    await asyncio.sleep(STEP * 6)
    assert receiver.calls == []


# --------------------------------------------------------------------------- knobs


async def test_courier_down_is_503_on_courier_routes_only(client: httpx.AsyncClient) -> None:
    pickup_id = await new_pickup(client, "http://127.0.0.1:9/hook")
    await client.put("/sandbox/knobs/courier", json={"down": True})

    responses = [
        await request_pickup(client, "http://127.0.0.1:9/hook", key="k2"),
        await action(client, pickup_id, "ready", "r1"),
        await action(client, pickup_id, "cancel", "c1"),
        await client.get(f"{PICKUPS}/{pickup_id}"),
    ]

    assert [r.status_code for r in responses] == [503, 503, 503, 503]
    assert responses[0].json() == {"detail": "courier provider unavailable"}
    [view] = await pickups_for(client)
    assert view["operations"] == ["request"]
    method = await client.post(
        "/payments/v1/payment-methods", json={"cardNumber": "4242424242424242"}
    )
    charge = await client.post(
        "/payments/v1/charges",
        json={
            "amount": 100,
            "currency": "EUR",
            "paymentMethod": method.json()["id"],
            "reference": "p",
        },
        headers={"Idempotency-Key": "pay"},
    )
    assert charge.status_code == 201
    assert (await client.get("/health")).status_code == 200


async def test_payment_down_leaves_courier_alone(client: httpx.AsyncClient) -> None:
    await client.put("/sandbox/knobs/payment", json={"down": True})
    assert (await request_pickup(client, "http://127.0.0.1:9/hook")).status_code == 201


async def test_courier_error_rate_one_is_500_and_records_nothing(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/sandbox/knobs/courier", json={"errorRate": 1})

    response = await request_pickup(client, "http://127.0.0.1:9/hook")

    assert response.status_code == 500
    assert await pickups_for(client) == []
    await client.put("/sandbox/knobs/courier", json={"errorRate": 0})
    assert (await request_pickup(client, "http://127.0.0.1:9/hook")).status_code == 201


async def test_courier_latency_delays_courier_calls(client: httpx.AsyncClient) -> None:
    await client.put("/sandbox/knobs/courier", json={"latencyMs": 50})
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await request_pickup(client, "http://127.0.0.1:9/hook")).status_code == 201
    assert loop.time() - started >= 0.045
