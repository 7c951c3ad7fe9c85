"""Which language a visitor gets, and how money, times and messages read in it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from markupsafe import escape

from app.platform import i18n
from app.platform.i18n import N_, Money, Msg, choose, from_accept_language, money, translate
from app.words import status_label, step_words


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "ko"),
        ("ko", "ko"),
        ("en-US,en;q=0.9", "en"),
        ("en-GB;q=0.5, ko-KR;q=0.8", "ko"),
        ("fr-FR,fr;q=0.9", None),
        ("ko;q=0, en;q=0.1", "en"),
        ("ko;q=zero", None),
        ("", None),
        (None, None),
        ("*", None),
    ],
)
def test_accept_language_picks_our_language_by_quality(
    header: str | None, expected: str | None
) -> None:
    assert from_accept_language(header) == expected


def test_the_account_beats_the_cookie_which_beats_the_browser() -> None:
    assert choose("ko", "en", "en-US") == "ko"
    assert choose(None, "en", "ko-KR") == "en"
    assert choose(None, None, "ko-KR") == "ko"
    assert choose(None, "xx", "ko-KR") == "ko"  # a forged cookie is ignored
    assert choose(None, None, "fr") == i18n.DEFAULT_LOCALE


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        (12000, "KRW", "ko", "₩12,000"),
        (12000, "KRW", "en", "₩12,000"),
        (1250, "USD", "en", "$12.50"),
        (1250, "USD", "ko", "US$12.50"),
        (950, "EUR", "en", "€9.50"),
        (500, "JPY", "en", "¥500"),
    ],
)
def test_money_follows_the_currency_and_the_language(
    amount: int, currency: str, locale: str, expected: str
) -> None:
    assert money(amount, currency, locale) == expected


def test_csv_amounts_have_the_currencys_decimals() -> None:
    assert i18n.plain_amount(15900, "KRW") == "15900"
    assert i18n.plain_amount(950, "EUR") == "9.50"


def test_times_show_the_shops_zone_in_either_language() -> None:
    moment = datetime(2026, 11, 30, 15, 5, 9, tzinfo=UTC)  # 00:05 the next day in Seoul
    assert i18n.shop_time(moment, "Asia/Seoul", "time", "ko") == "00:05:09"
    assert i18n.shop_time(moment, "Asia/Seoul", "datetime", "ko") == "2026년 12월 1일 00:05"
    assert i18n.shop_time(moment, "Asia/Seoul", "datetime", "en") == "1 Dec 2026, 00:05"
    assert i18n.shop_time(moment, "UTC", "time", "en") == "15:05:09"
    assert i18n.shop_time(moment, "Asia/Seoul", "%H:%M", "ko") == "00:05"


def test_a_message_is_english_in_code_and_translated_on_a_page() -> None:
    message = N_("Too many attempts; please try again in %(seconds)s seconds.", seconds=30)
    assert isinstance(message, Msg)
    assert message == "Too many attempts; please try again in 30 seconds."
    assert translate(message, "ko") == "시도 횟수가 너무 많아요. 30초 후에 다시 시도해 주세요."
    i18n.set_locale("ko")
    try:
        assert str(escape(message)) == "시도 횟수가 너무 많아요. 30초 후에 다시 시도해 주세요."
    finally:
        i18n.set_locale("en")
    assert str(escape(message)) == "Too many attempts; please try again in 30 seconds."


def test_nested_labels_and_amounts_are_translated_too() -> None:
    refused = N_(
        "This order is %(status)s and can no longer be cancelled.",
        status=status_label("cancelled"),
    )
    assert refused == "This order is Cancelled and can no longer be cancelled."
    assert translate(refused, "ko") == "이 주문은 취소됨 상태라 취소할 수 없어요."
    paid = step_words("paid", {"amount": 15900, "currency": "KRW"})
    assert translate(paid, "ko") == "₩15,900 결제 완료"
    assert translate(Money(950, "EUR"), "en") == "€9.50"


def test_data_from_the_catalog_translates_and_other_text_stays_as_typed() -> None:
    assert translate("Margherita", "ko") == "마르게리타"
    assert translate("Wrong pizza", "ko") == "다른 피자가 왔어요"
    assert translate("Chef's special by the admin", "ko") == "Chef's special by the admin"
    assert translate("", "ko") == ""
