"""What a person is told to wait when a rate limit refuses them."""

from __future__ import annotations

import pytest

from app.platform.i18n import translate
from app.platform.ratelimit import _try_again_in


@pytest.mark.parametrize(
    ("seconds", "english", "korean"),
    [
        (
            1,
            "Too many attempts; please try again in a second.",
            "시도 횟수가 너무 많아요. 1초 후에 다시 시도해 주세요.",
        ),
        (
            42,
            "Too many attempts; please try again in 42 seconds.",
            "시도 횟수가 너무 많아요. 42초 후에 다시 시도해 주세요.",
        ),
    ],
)
def test_the_wait_reads_right_in_both_languages(seconds: int, english: str, korean: str) -> None:
    told = _try_again_in(seconds)

    assert told == english
    assert translate(told, "ko") == korean
