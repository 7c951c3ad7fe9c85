"""HttpPaymentProvider against the sandbox provider: outcomes and failure sorting."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar

from app.payment.provider import (
    ChargeOutcome,
    HttpPaymentProvider,
    PaymentRejected,
    ProviderUnavailable,
)
from app.platform.partner_http import HttpxPartner, partner_client
from app.platform.settings import PartnerSettings, Settings
from app.sandbox.app import create_sandbox_app
from tests.support.inloop import asgi_client, serve

GOOD_CARD = "4242424242424242"


@pytest.fixture
def sandbox() -> Litestar:
    return create_sandbox_app()


@pytest.fixture
async def control(sandbox: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """A plain client on the sandbox, for turning knobs and inspecting charges."""
    async with asgi_client(sandbox) as client:
        yield client


@pytest.fixture
async def provider(sandbox: Litestar) -> AsyncIterator[HttpPaymentProvider]:
    provider = HttpPaymentProvider(HttpxPartner(asgi_client(sandbox)))
    yield provider
    await provider.aclose()


@pytest.fixture
async def served_sandbox(sandbox: Litestar) -> AsyncIterator[str]:
    """The sandbox on a real 127.0.0.1 socket: ASGITransport cannot time out."""
    async with serve(sandbox) as url:
        yield url


async def charge(
    provider: HttpPaymentProvider, card: str = GOOD_CARD, key: str = "k1"
) -> ChargeOutcome:
    method = await provider.tokenize(card)
    return await provider.charge(
        reference="pay-1",
        amount=1250,
        currency="EUR",
        payment_method=method.id,
        idempotency_key=key,
    )


async def set_knobs(control: httpx.AsyncClient, **knobs: Any) -> None:
    response = await control.put("/sandbox/knobs/payment", json=knobs)
    assert response.status_code == 200


async def charges(control: httpx.AsyncClient) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = (
        await control.get("/sandbox/payments/charges", params={"reference": "pay-1"})
    ).json()
    return result


async def test_captured(provider: HttpPaymentProvider, control: httpx.AsyncClient) -> None:
    outcome = await charge(provider)

    assert outcome.captured
    assert outcome.failure_reason is None
    assert outcome.provider_ref is not None
    assert outcome.provider_ref.startswith("ch_")
    [recorded] = await charges(control)
    assert recorded["id"] == outcome.provider_ref
    assert recorded["amount"] == 1250


async def test_retry_with_same_key_is_the_same_charge(
    provider: HttpPaymentProvider, control: httpx.AsyncClient
) -> None:
    first = await charge(provider)
    second = await charge(provider)
    assert second == first
    assert len(await charges(control)) == 1


@pytest.mark.parametrize(
    ("card", "reason"),
    [
        ("4000000000000002", "Your card was declined."),
        ("4000000000009995", "Insufficient funds."),
        ("1234567812345678", "Your card number is incorrect."),
    ],
)
async def test_declined_with_reason(provider: HttpPaymentProvider, card: str, reason: str) -> None:
    outcome = await charge(provider, card=card)

    assert not outcome.captured
    assert outcome.failure_reason == reason
    assert outcome.provider_ref is not None


async def test_void_and_refund(provider: HttpPaymentProvider, control: httpx.AsyncClient) -> None:
    voided = await charge(provider, key="c1")
    refunded = await charge(provider, key="c2")
    assert voided.provider_ref is not None
    assert refunded.provider_ref is not None

    await provider.void(provider_ref=voided.provider_ref, idempotency_key="v1")
    await provider.void(provider_ref=voided.provider_ref, idempotency_key="v1")  # safe retry
    await provider.refund(provider_ref=refunded.provider_ref, idempotency_key="r1")

    statuses = {c["id"]: c["status"] for c in await charges(control)}
    assert statuses == {voided.provider_ref: "voided", refunded.provider_ref: "refunded"}
    counts = (await control.get("/sandbox/payments/operations")).json()
    assert counts == {"capture": 2, "void": 1, "refund": 1}


async def test_void_of_voided_charge_is_rejected(provider: HttpPaymentProvider) -> None:
    outcome = await charge(provider)
    assert outcome.provider_ref is not None
    await provider.void(provider_ref=outcome.provider_ref, idempotency_key="v1")

    with pytest.raises(PaymentRejected) as caught:
        await provider.void(provider_ref=outcome.provider_ref, idempotency_key="v2")

    assert caught.value.status_code == 409
    assert "voided" in caught.value.detail


async def test_refund_of_unknown_charge_is_rejected(provider: HttpPaymentProvider) -> None:
    with pytest.raises(PaymentRejected) as caught:
        await provider.refund(provider_ref="ch_nope", idempotency_key="r1")
    assert caught.value.status_code == 404


async def test_key_reuse_with_other_amount_is_rejected(provider: HttpPaymentProvider) -> None:
    await charge(provider)
    method = await provider.tokenize(GOOD_CARD)
    with pytest.raises(PaymentRejected) as caught:
        await provider.charge(
            reference="pay-1",
            amount=1,
            currency="EUR",
            payment_method=method.id,
            idempotency_key="k1",
        )
    assert caught.value.status_code == 409


async def test_down_is_unavailable(
    provider: HttpPaymentProvider, control: httpx.AsyncClient
) -> None:
    await set_knobs(control, down=True)

    with pytest.raises(ProviderUnavailable, match="503"):
        await charge(provider)
    with pytest.raises(ProviderUnavailable):
        await provider.void(provider_ref="ch_any", idempotency_key="v1")


async def test_error_rate_one_is_unavailable(
    provider: HttpPaymentProvider, control: httpx.AsyncClient
) -> None:
    await set_knobs(control, errorRate=1.0)

    with pytest.raises(ProviderUnavailable, match="500"):
        await charge(provider)
    with pytest.raises(ProviderUnavailable):
        await provider.refund(provider_ref="ch_any", idempotency_key="r1")
    assert await charges(control) == []


async def test_timeout_is_unavailable(served_sandbox: str, control: httpx.AsyncClient) -> None:
    await set_knobs(control, latencyMs=300)
    client = partner_client(served_sandbox, 0.05)
    async with HttpPaymentProvider(client) as provider:
        with pytest.raises(ProviderUnavailable, match="timed out"):
            await charge(provider)

        await set_knobs(control, latencyMs=0)
        outcome = await charge(provider, key="k2")
        assert outcome.captured


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = partner_client(f"http://127.0.0.1:{port}", 1.0)
    async with HttpPaymentProvider(client) as provider:
        with pytest.raises(ProviderUnavailable, match="unreachable"):
            await charge(provider)


async def test_from_settings(served_sandbox: str) -> None:
    settings = Settings(partners=PartnerSettings(payment_url=served_sandbox, timeout_seconds=2.0))
    async with HttpPaymentProvider.from_settings(settings) as provider:
        outcome = await charge(provider)
    assert outcome.captured
