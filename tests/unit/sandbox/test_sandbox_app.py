"""The sandbox payment provider behaves like a real provider in test mode."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from litestar import Litestar

from app.sandbox.app import create_sandbox_app, luhn_valid

CHARGES = "/payments/v1/charges"
GOOD_CARD = "4242424242424242"


def asgi_client(app: Litestar) -> httpx.AsyncClient:
    """An in-process client; httpx's ASGI app type is narrower than Litestar's signature."""
    transport = httpx.ASGITransport(app=cast(Any, app))
    return httpx.AsyncClient(transport=transport, base_url="http://sandbox")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_sandbox_app()) as c:
        yield c


def charge_body(
    method: str = "pm_unknown", reference: str = "pay-1", amount: int = 1250
) -> dict[str, Any]:
    return {"amount": amount, "currency": "EUR", "paymentMethod": method, "reference": reference}


async def tokenize(client: httpx.AsyncClient, card: str) -> httpx.Response:
    return await client.post("/payments/v1/payment-methods", json={"cardNumber": card})


async def charge(
    client: httpx.AsyncClient, key: str, card: str = GOOD_CARD, **overrides: Any
) -> httpx.Response:
    tokenized = await tokenize(client, card)
    if tokenized.status_code != 201:  # the provider is down or slow (knobs)
        return tokenized
    return await client.post(
        CHARGES,
        json=charge_body(tokenized.json()["id"], **overrides),
        headers={"Idempotency-Key": key},
    )


async def test_a_card_is_exchanged_for_a_token_brand_and_last_four(
    client: httpx.AsyncClient,
) -> None:
    response = await tokenize(client, "4242 4242 4242 4242")
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "brand": "visa", "last4": "4242"}
    assert body["id"].startswith("pm_") and "4242424242424242" not in response.text
    assert (await tokenize(client, "12ab")).status_code == 400


async def test_a_charge_needs_a_known_payment_method(client: httpx.AsyncClient) -> None:
    response = await client.post(
        CHARGES, json=charge_body("pm_nope"), headers={"Idempotency-Key": "k-nope"}
    )
    assert response.status_code == 404


async def charges_for(client: httpx.AsyncClient, reference: str) -> list[dict[str, Any]]:
    response = await client.get("/sandbox/payments/charges", params={"reference": reference})
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result


async def operation_counts(client: httpx.AsyncClient) -> dict[str, int]:
    response = await client.get("/sandbox/payments/operations")
    assert response.status_code == 200
    result: dict[str, int] = response.json()
    return result


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_good_card_is_captured(client: httpx.AsyncClient) -> None:
    response = await charge(client, "k1")

    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("ch_")
    assert body == {
        "id": body["id"],
        "status": "captured",
        "amount": 1250,
        "currency": "EUR",
        "reference": "pay-1",
        "declineReason": None,
    }
    fetched = await client.get(f"{CHARGES}/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == body


@pytest.mark.parametrize(
    ("card", "reason"),
    [
        ("4000000000000002", "Your card was declined."),
        ("4000000000009995", "Insufficient funds."),
        ("4242424242424241", "Your card number is incorrect."),
    ],
)
async def test_declines(client: httpx.AsyncClient, card: str, reason: str) -> None:
    response = await charge(client, "k1", card=card)

    assert response.status_code == 402
    body = response.json()
    assert body["status"] == "declined"
    assert body["declineReason"] == reason
    assert body["id"].startswith("ch_")
    assert (await operation_counts(client))["capture"] == 0


@pytest.mark.parametrize("card", ["42424242", "4242x4242x4242x4242", ""])
async def test_malformed_numbers_are_refused_at_tokenization(
    client: httpx.AsyncClient, card: str
) -> None:
    response = await tokenize(client, card)
    assert response.status_code == 400


async def test_any_other_luhn_valid_number_is_captured(client: httpx.AsyncClient) -> None:
    card = "5555555555554444"
    assert luhn_valid(card)
    response = await charge(client, "k1", card=card)
    assert response.status_code == 201


async def test_idempotency_key_is_required(client: httpx.AsyncClient) -> None:
    response = await client.post(CHARGES, json=charge_body())
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]
    assert await charges_for(client, "pay-1") == []


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"{}",
        b'{"amount": 0, "currency": "EUR", "paymentMethod": "pm_x", "reference": "r"}',
        b'{"amount": 5, "currency": "euro", "paymentMethod": "pm_x", "reference": "r"}',
    ],
)
async def test_bad_body_is_400(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post(CHARGES, content=content, headers={"Idempotency-Key": "k1"})
    assert response.status_code == 400
    assert response.json()["detail"]


async def test_replay_returns_first_response_and_creates_one_charge(
    client: httpx.AsyncClient,
) -> None:
    first = await charge(client, "k1")
    second = await charge(client, "k1")

    assert second.status_code == first.status_code == 201
    assert second.content == first.content
    charges = await charges_for(client, "pay-1")
    assert [c["id"] for c in charges] == [first.json()["id"]]
    assert charges[0]["operations"] == ["capture"]
    assert (await operation_counts(client))["capture"] == 1


async def test_replay_of_a_decline_is_the_same_decline(client: httpx.AsyncClient) -> None:
    first = await charge(client, "k1", card="4000000000000002")
    second = await charge(client, "k1", card="4000000000000002")
    assert second.status_code == 402
    assert second.content == first.content
    assert len(await charges_for(client, "pay-1")) == 1


async def test_key_reuse_with_different_body_is_409(client: httpx.AsyncClient) -> None:
    await charge(client, "k1")
    response = await charge(client, "k1", amount=999)

    assert response.status_code == 409
    assert response.json() == {"detail": "idempotency key reused with different parameters"}
    assert len(await charges_for(client, "pay-1")) == 1


async def test_different_keys_make_different_charges(client: httpx.AsyncClient) -> None:
    await charge(client, "k1")
    await charge(client, "k2")
    assert len(await charges_for(client, "pay-1")) == 2
    assert await charges_for(client, "other") == []


async def test_void_once(client: httpx.AsyncClient) -> None:
    charge_id = (await charge(client, "k1")).json()["id"]
    url = f"{CHARGES}/{charge_id}/void"

    first = await client.post(url, headers={"Idempotency-Key": "v1"})
    replay = await client.post(url, headers={"Idempotency-Key": "v1"})
    again = await client.post(url, headers={"Idempotency-Key": "v2"})
    refund = await client.post(f"{CHARGES}/{charge_id}/refund", headers={"Idempotency-Key": "r1"})

    assert first.status_code == 200
    assert first.json()["status"] == "voided"
    assert replay.status_code == 200
    assert replay.content == first.content
    assert again.status_code == 409
    assert refund.status_code == 409
    [view] = await charges_for(client, "pay-1")
    assert view["status"] == "voided"
    assert view["operations"] == ["capture", "void"]
    assert await operation_counts(client) == {"capture": 1, "void": 1, "refund": 0}


async def test_refund_once(client: httpx.AsyncClient) -> None:
    charge_id = (await charge(client, "k1")).json()["id"]
    url = f"{CHARGES}/{charge_id}/refund"

    first = await client.post(url, headers={"Idempotency-Key": "r1"})
    replay = await client.post(url, headers={"Idempotency-Key": "r1"})
    again = await client.post(url, headers={"Idempotency-Key": "r2"})

    assert first.status_code == 200
    assert first.json()["status"] == "refunded"
    assert replay.content == first.content
    assert again.status_code == 409
    assert (await operation_counts(client))["refund"] == 1
    assert (await client.get(f"{CHARGES}/{charge_id}")).json()["status"] == "refunded"


async def test_void_of_declined_charge_is_409(client: httpx.AsyncClient) -> None:
    charge_id = (await charge(client, "k1", card="4000000000000002")).json()["id"]
    response = await client.post(f"{CHARGES}/{charge_id}/void", headers={"Idempotency-Key": "v1"})
    assert response.status_code == 409


async def test_void_needs_key_and_known_charge(client: httpx.AsyncClient) -> None:
    charge_id = (await charge(client, "k1")).json()["id"]
    assert (await client.post(f"{CHARGES}/{charge_id}/void")).status_code == 400
    missing = await client.post(f"{CHARGES}/ch_nope/void", headers={"Idempotency-Key": "v1"})
    assert missing.status_code == 404
    assert (await client.get(f"{CHARGES}/ch_nope")).status_code == 404


async def test_knobs_defaults_and_update(client: httpx.AsyncClient) -> None:
    defaults = {"latencyMs": 0, "errorRate": 0.0, "down": False, "answerDelayMs": 0}
    assert (await client.get("/sandbox/knobs")).json() == {"payment": defaults, "courier": defaults}

    response = await client.put("/sandbox/knobs/courier", json={"latencyMs": 20})

    assert response.status_code == 200
    assert response.json() == {**defaults, "latencyMs": 20}
    assert (await client.get("/sandbox/knobs")).json()["payment"] == defaults


@pytest.mark.parametrize(
    "body", [{"errorRate": 1.5}, {"latencyMs": -1}, {"down": "yes"}, {"colour": "red"}]
)
async def test_bad_knobs_are_refused(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.put("/sandbox/knobs/payment", json=body)
    assert response.status_code in {400, 422}
    assert (await client.get("/sandbox/knobs")).json()["payment"]["errorRate"] == 0.0


async def test_unknown_partner_is_404(client: httpx.AsyncClient) -> None:
    response = await client.put("/sandbox/knobs/bank", json={"down": True})
    assert response.status_code == 404


async def test_down_is_503(client: httpx.AsyncClient) -> None:
    await client.put("/sandbox/knobs/payment", json={"down": True})

    response = await charge(client, "k1")

    assert response.status_code == 503
    assert response.json() == {"detail": "payment provider unavailable"}
    assert await charges_for(client, "pay-1") == []
    assert (await client.get("/health")).status_code == 200


async def test_error_rate_one_is_500_and_records_nothing(client: httpx.AsyncClient) -> None:
    await client.put("/sandbox/knobs/payment", json={"errorRate": 1})

    response = await charge(client, "k1")

    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    assert await charges_for(client, "pay-1") == []

    await client.put("/sandbox/knobs/payment", json={"errorRate": 0})
    retried = await charge(client, "k1")
    assert retried.status_code == 201, "the failed attempt must not have claimed the key"
    assert len(await charges_for(client, "pay-1")) == 1


async def test_latency_delays_payment_calls(client: httpx.AsyncClient) -> None:
    await client.put("/sandbox/knobs/payment", json={"latencyMs": 50})
    started = time.monotonic()
    response = await charge(client, "k1")
    assert response.status_code == 201
    assert time.monotonic() - started >= 0.045


async def test_reset_forgets_everything(client: httpx.AsyncClient) -> None:
    first = await charge(client, "k1")
    await client.put("/sandbox/knobs/payment", json={"latencyMs": 5, "down": True})

    response = await client.post("/sandbox/reset")

    assert response.status_code == 200
    knobs = (await client.get("/sandbox/knobs")).json()
    assert knobs["payment"] == {"latencyMs": 0, "errorRate": 0.0, "down": False, "answerDelayMs": 0}
    assert await charges_for(client, "pay-1") == []
    assert await operation_counts(client) == {"capture": 0, "void": 0, "refund": 0}
    assert (await client.get(f"{CHARGES}/{first.json()['id']}")).status_code == 404
    again = await charge(client, "k1")
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]


async def test_apps_do_not_share_state() -> None:
    apps = [create_sandbox_app(), create_sandbox_app()]
    clients = [asgi_client(app) for app in apps]
    try:
        await charge(clients[0], "k1")
        assert len(await charges_for(clients[0], "pay-1")) == 1
        assert await charges_for(clients[1], "pay-1") == []
    finally:
        for c in clients:
            await c.aclose()


def test_luhn() -> None:
    assert luhn_valid("4242424242424242")
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


def test_the_sandbox_vault_seals_cards_into_tokens_only_it_can_open() -> None:
    from app.sandbox.app import CardVault

    vault, other = CardVault(b"k" * 32), CardVault(b"o" * 32)
    token = vault.seal("4242424242424242")
    assert token.startswith("pm_") and "4242424242424242" not in token
    assert vault.seal("4242424242424242") == token, "one token per card"
    assert vault.open(token) == "4242424242424242"
    assert CardVault(b"k" * 32).open(token) == "4242424242424242", "another process, same key"
    assert other.open(token) is None
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert vault.open(tampered) is None
    assert vault.open("pm_") is None and vault.open("pm_!!!") is None and vault.open("x") is None


async def test_a_late_answer_comes_after_the_work_is_done(client: httpx.AsyncClient) -> None:
    """``answerDelayMs``: the charge exists before its answer leaves, and the idempotency
    key tells what it became (a client that timed out asks there)."""
    await client.put("/sandbox/knobs/payment", json={"answerDelayMs": 300})
    headers = {"Idempotency-Key": "late-1"}
    body = {"amount": 100, "currency": "KRW", "paymentMethod": "pm_late", "reference": "late"}
    await client.put("/sandbox/payments/payment-methods/pm_late", json={"cardNumber": GOOD_CARD})
    answered = asyncio.ensure_future(client.post(CHARGES, json=body, headers=headers))
    await asyncio.sleep(0.1)
    assert not answered.done()
    found = await client.get(f"{CHARGES}/by-idempotency-key/late-1")
    assert found.status_code == 200 and found.json()["status"] == "captured"
    assert (await answered).status_code == 201
    missing = await client.get(f"{CHARGES}/by-idempotency-key/never-used")
    assert missing.status_code == 404
