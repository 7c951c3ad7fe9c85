"""Consumer side of the payment contract: the shop's payment adapter
(``HttpPaymentProvider``) against a Pact mock of the payment provider. The pact it proves
is committed in tests/contracts/pacts and verified against the real sandbox provider in
``test_partner_verification.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from pact import match

from app.payment.provider import (
    CHARGES_PATH,
    PAYMENT_METHODS_PATH,
    HttpPaymentProvider,
    PaymentRejected,
)
from app.platform.partner_http import IDEMPOTENCY_HEADER, partner_client
from tests.support.pacts import CONSUMER, PAYMENT_PROVIDER, keep_committed_pact_current, new_pact

pytestmark = pytest.mark.contracts

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
CHARGE_ID = match.regex("ch_0123456789abcdef01234567", regex=r"^ch_\w+$")


def key(example: str):  # type: ignore[no-untyped-def]
    """Any idempotency key; each interaction's example differs, since the provider
    refuses one key reused for a different request."""
    return match.regex(f"pact-{example}", regex=r"^\S+$")


def payment_pact():  # type: ignore[no-untyped-def]
    pact = new_pact(CONSUMER, PAYMENT_PROVIDER)
    (
        pact.upon_receiving("a card to keep as a payment method")
        .with_request("POST", PAYMENT_METHODS_PATH)
        .with_header(IDEMPOTENCY_HEADER, key("tokenize"))
        .with_body({"cardNumber": GOOD_CARD}, content_type="application/json")
        .will_respond_with(201)
        .with_body(
            {
                "id": match.regex("pm_0123456789abcdef-_0123456", regex=r"^pm_[A-Za-z0-9_-]+$"),
                "brand": match.str("visa"),
                "last4": "4242",
            },
            content_type="application/json",
        )
    )
    for description, method, card, status, body in (
        (
            "a charge of a good card",
            "pm_pact_good",
            GOOD_CARD,
            201,
            {"id": CHARGE_ID, "status": "captured"},
        ),
        (
            "a charge of a card that is declined",
            "pm_pact_declined",
            DECLINED_CARD,
            402,
            {"id": CHARGE_ID, "status": "declined", "declineReason": match.str("declined")},
        ),
    ):
        (
            pact.upon_receiving(description)
            .given("a payment method exists", id=method, cardNumber=card)
            .with_request("POST", CHARGES_PATH)
            .with_header(IDEMPOTENCY_HEADER, key(method))
            .with_body(
                {
                    "amount": match.int(3100),
                    "currency": match.regex("EUR", regex=r"^[A-Z]{3}$"),
                    "paymentMethod": method,
                    "reference": match.str("pay-1"),
                },
                content_type="application/json",
            )
            .will_respond_with(status)
            .with_body(body, content_type="application/json")
        )
    for action, done in (("void", "voided"), ("refund", "refunded")):
        (
            pact.upon_receiving(f"a {action} of a captured charge")
            .given("a charge exists", id=f"ch_pact_{action}", status="captured")
            .with_request("POST", f"{CHARGES_PATH}/ch_pact_{action}/{action}")
            .with_header(IDEMPOTENCY_HEADER, key(action))
            .will_respond_with(200)
            .with_body({"id": f"ch_pact_{action}", "status": done}, content_type="application/json")
        )
    (
        pact.upon_receiving("a void of a charge that was already refunded")
        .given("a charge exists", id="ch_pact_refunded", status="refunded")
        .with_request("POST", f"{CHARGES_PATH}/ch_pact_refunded/void")
        .with_header(IDEMPOTENCY_HEADER, key("void-refunded"))
        .will_respond_with(409)
        .with_body({"detail": match.str("cannot void")}, content_type="application/json")
    )
    (
        pact.upon_receiving("a look-up of the charge an idempotency key made")
        .given(
            "a charge exists",
            id="ch_pact_lookup",
            status="captured",
            idempotencyKey="pay-6:capture",
        )
        .with_request("GET", f"{CHARGES_PATH}/by-idempotency-key/pay-6%3Acapture")
        .will_respond_with(200)
        .with_body(
            {"id": "ch_pact_lookup", "status": match.regex("captured", regex=r"^\w+$")},
            content_type="application/json",
        )
    )
    (
        pact.upon_receiving("a look-up of a key that made no charge")
        .with_request("GET", f"{CHARGES_PATH}/by-idempotency-key/pay-7%3Acapture")
        .will_respond_with(404)
    )
    return pact


async def test_the_payment_adapter_keeps_its_contract_with_the_provider(tmp_path: Path) -> None:
    pact = payment_pact()
    with pact.serve() as server:
        provider = HttpPaymentProvider(partner_client(str(server.url), 10))
        async with provider:
            method = await provider.tokenize(GOOD_CARD)
            paid = await provider.charge(
                reference="pay-1",
                amount=3100,
                currency="EUR",
                payment_method="pm_pact_good",
                idempotency_key="pay-1:capture",
            )
            declined = await provider.charge(
                reference="pay-1",
                amount=3100,
                currency="EUR",
                payment_method="pm_pact_declined",
                idempotency_key="pay-2:capture",
            )
            await provider.void(provider_ref="ch_pact_void", idempotency_key="pay-3:void")
            await provider.refund(provider_ref="ch_pact_refund", idempotency_key="pay-4:refund")
            with pytest.raises(PaymentRejected) as refused:
                await provider.void(provider_ref="ch_pact_refunded", idempotency_key="pay-5:void")
            found = await provider.find_charge(idempotency_key="pay-6:capture")
            never = await provider.find_charge(idempotency_key="pay-7:capture")
    assert method.id.startswith("pm_") and method.last4 == "4242"
    assert paid.captured and paid.provider_ref and paid.provider_ref.startswith("ch_")
    assert not declined.captured and declined.failure_reason
    assert refused.value.status_code == 409
    assert found is not None and found.captured and found.provider_ref == "ch_pact_lookup"
    assert never is None
    keep_committed_pact_current(pact, tmp_path)
