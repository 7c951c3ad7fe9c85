"""Route dependencies are resolved one after another (``app.platform.deps``), with the
same results and the same errors as Litestar's concurrent resolution."""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar import Litestar, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException
from litestar.testing import TestClient

from app.platform import deps

order: list[str] = []


async def first() -> str:
    order.append("first")
    return "margherita"


def second() -> int:
    order.append("second")
    return 2


async def session() -> AsyncIterator[str]:
    order.append("opened")
    yield "session"
    order.append("closed")


def refused() -> str:
    raise NotAuthorizedException("who are you?")


@get("/both", sync_to_thread=False)
def both(
    pizza: NamedDependency[str], qty: NamedDependency[int], db: NamedDependency[str]
) -> dict[str, object]:
    return {"pizza": pizza, "qty": qty, "db": db}


@get("/refused", sync_to_thread=False)
def refusing(pizza: NamedDependency[str], nobody: NamedDependency[str]) -> str:
    return nobody


def _app() -> Litestar:
    deps.resolve_in_turn()
    return Litestar(
        [both, refusing],
        dependencies={
            "pizza": Provide(first),
            "qty": Provide(second, sync_to_thread=False),
            "db": Provide(session),
            "nobody": Provide(refused, sync_to_thread=False),
        },
    )


def test_every_dependency_of_a_level_is_resolved_and_a_generator_cleaned_up() -> None:
    order.clear()
    with TestClient(_app()) as client:
        answer = client.get("/both")
    assert answer.json() == {"pizza": "margherita", "qty": 2, "db": "session"}
    assert sorted(order) == ["closed", "first", "opened", "second"]
    assert order[-1] == "closed"


def test_a_failing_dependency_answers_with_its_own_error() -> None:
    with TestClient(_app()) as client:
        answer = client.get("/refused")
    assert answer.status_code == 401
    assert "who are you?" in answer.text


def test_the_app_resolves_in_turn() -> None:
    from litestar._kwargs.kwargs_model import KwargsModel

    deps.resolve_in_turn()
    assert KwargsModel.resolve_dependencies is deps._resolve_in_turn
