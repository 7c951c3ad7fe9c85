"""Each step of an order's timeline says something its label does not (customer walk:
"In the oven — In the oven")."""

from __future__ import annotations

import pytest

from app.words import STEP_WORDS, status_label, step_words


@pytest.mark.parametrize("status", sorted(STEP_WORDS))
def test_a_steps_words_are_not_its_label_again(status: str) -> None:
    assert str(step_words(status)).casefold() != status_label(status).casefold()
