"""Services name fields in the domain's words; only the JSON API camelizes them."""

from __future__ import annotations

import msgspec
import pytest

from app.operations.schemas import PartnerKnobsRequest
from app.operations.service import parse_knobs
from app.payment.service import normalize_card_number
from app.platform.errors import InvalidInput
from app.platform.web import api_name


@pytest.mark.parametrize(
    ("field", "spelled"),
    [
        ("card_number", "cardNumber"),
        ("items[0].pizza_id", "items[0].pizzaId"),
        ("items[12].qty", "items[12].qty"),
        ("idempotency_key", "Idempotency-Key"),
        ("address", "address"),
        ("cardNumber", "cardNumber"),  # a body the API decoded already speaks camelCase
    ],
)
def test_the_api_spells_a_domain_field_in_camel_case(field: str, spelled: str) -> None:
    assert api_name(field) == spelled


def test_an_api_body_reads_back_in_the_domains_words() -> None:
    body = msgspec.json.decode(
        b'{"latencyMs": 5, "errorRate": 0.5, "down": null}', type=PartnerKnobsRequest
    )
    assert body.knobs() == {"latency_ms": 5, "error_rate": 0.5}


def test_services_name_the_field_as_the_form_does() -> None:
    with pytest.raises(InvalidInput) as card:
        normalize_card_number("12ab")
    with pytest.raises(InvalidInput) as knobs:
        parse_knobs({"latency_ms": "-1", "error_rate": "2", "down": "1"})
    assert list(card.value.by_field()) == ["card_number"]
    assert list(knobs.value.by_field()) == ["latency_ms", "error_rate"]
    assert parse_knobs({"latency_ms": "5", "down": "on"}) == {"latency_ms": 5, "down": True}
