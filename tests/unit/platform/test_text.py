"""Which typed text is kept as it is: storable, and read by others as it was written."""

from __future__ import annotations

import pytest

from app.platform.text import plain, storable


@pytest.mark.parametrize(
    "text",
    ["ring twice", "شقة ٣، الطابق الثاني", "דירה 3\u200f, floor 2", "초인종 두 번 눌러 주세요", ""],
)
def test_words_in_any_script_and_the_marks_keyboards_insert_are_plain(text: str) -> None:
    assert plain(text)


@pytest.mark.parametrize("control", ["\u202e", "\u202d", "\u202a", "\u202c", "\u2066", "\u2069"])
def test_a_direction_control_is_not_plain_though_storable(control: str) -> None:
    text = f"cold {control}desrever setouq"
    assert storable(text) and not plain(text)


def test_nul_is_neither() -> None:
    assert not storable("a\x00b") and not plain("a\x00b")
