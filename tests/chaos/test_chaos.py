"""Chaos: the pipeline under worker, relay, Redis, PostgreSQL and partner failures.

One shop (its own PostgreSQL cluster, Redis server, sandbox partners and processes) runs a
seeded workload through every fault in turn, then through all of them at once. After each
phase the invariant checker (``tests/chaos/invariants.py``) reads PostgreSQL and the
partners' own records; a phase passes when the shop converged in time, nothing died on
its own, no click did something twice, and every invariant holds. The figures are printed
at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.chaos.campaign import PHASES, Campaign, Phase
from tests.chaos.invariants import check
from tests.chaos.report import RESULTS, mark_start
from tests.chaos.services import Shop, chaos_world
from tests.chaos.workload import PASSWORD, Workload

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]
SEED = int(os.environ.get("CHAOS_SEED", "20261130"))
#: ``CHAOS_PHASES=baseline,redis-restart`` runs only those phases (while working on one)
CHOSEN = [p for p in PHASES if p.name in os.environ.get("CHAOS_PHASES", p.name).split(",")]


@pytest.fixture(scope="module")
def world() -> Iterator[Shop]:
    mark_start()
    with chaos_world() as shop:
        yield shop


@pytest.fixture(scope="module")
async def campaign(world: Shop) -> AsyncIterator[Campaign]:
    staff = "chaos-staff@example.com"
    world.cli("user", "create", "--email", staff, "--password", PASSWORD, "--role", "staff")
    workload = Workload(world.url, world.sandbox_url, seed=SEED)
    await workload.sign_up(12, staff)
    yield Campaign(world, workload)
    await workload.aclose()


@pytest.mark.parametrize("phase", CHOSEN, ids=[p.name for p in CHOSEN])
async def test_the_shop_survives(campaign: Campaign, phase: Phase) -> None:
    result = await campaign.run_phase(phase)
    RESULTS.append(result)
    assert result.ok, f"{phase.name}:\n{result.problems()}"


async def test_every_acknowledged_order_is_whole_after_the_whole_run(campaign: Campaign) -> None:
    """The whole database at the end: every phase's orders, every event, every letter."""
    report = await check(
        campaign.shop.postgres.dsn(),
        campaign.shop.sandbox_url,
        acknowledged=campaign.acknowledged,
        expected_dead_letters=campaign.poison,
    )
    deaths = {name: part.deaths for name, part in campaign.shop.parts.items() if part.deaths}
    assert not report.violations and not deaths, f"{report.summary()}\ndied: {deaths}"
