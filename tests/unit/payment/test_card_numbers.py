"""Card numbers are checked before an order is written: length and the Luhn checksum."""

from __future__ import annotations

import pytest

from app.payment.service import luhn_valid, normalize_card_number
from app.platform.errors import InvalidInput


@pytest.mark.parametrize(
    "number",
    ["4242424242424242", "4000000000000002", "4000000000009995", "5555555555554444"],
)
def test_real_test_cards_pass_luhn(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4242424242424241", "4242424242424224", "1234567812345678"])
def test_a_one_digit_typo_or_a_swap_fails_luhn(number: str) -> None:
    assert not luhn_valid(number)


def test_spaces_and_dashes_are_dropped() -> None:
    assert normalize_card_number(" 4242 4242-4242 4242 ") == "4242424242424242"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("4242 4242 4242 4241", "typo"),
        ("4242 42", "12 to 19 digits"),
        ("4" * 20, "12 to 19 digits"),
        ("٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢", "12 to 19 digits"),
    ],
)
def test_bad_numbers_name_the_card_field(raw: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalize_card_number(raw)
    [error] = caught.value.errors
    assert error.field == "card_number" and words in error.message
