"""The Redis-backed circuit breaker against a real Redis (db 0, one unique name per test).

Time is the test's: every breaker here reads a ``Clock`` the test moves on (the open
period, how long a call took), so no test sleeps past a period or counts on a margin."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from app.platform.breaker import (
    BreakerOpen,
    BreakerPolicy,
    CircuitBreaker,
    breaker_keys,
    read_states,
)
from app.platform.errors import Unavailable
from tests.support.clock import Clock

Make = Callable[..., CircuitBreaker]

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379") + "/0"


class PartnerDown(Exception):
    """Stands in for an adapter's "unavailable" exception."""


class Declined(Exception):
    """A business answer from a healthy partner."""


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def name() -> str:
    return f"test-{uuid4().hex}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make(redis: Redis, name: str, clock: Clock) -> AsyncIterator[Make]:
    def build(**policy: float) -> CircuitBreaker:
        return CircuitBreaker(redis, name, BreakerPolicy(**policy), (PartnerDown,), clock)  # type: ignore[arg-type]

    yield build
    await redis.delete(*breaker_keys(name))


async def ok() -> str:
    return "ok"


async def down() -> str:
    raise PartnerDown("partner down")


async def attempt(breaker: CircuitBreaker, fn: Callable[[], Awaitable[str]]) -> None:
    """Call through the breaker, swallowing the partner's own failure."""
    with contextlib.suppress(PartnerDown):
        await breaker.call(fn)


async def open_it(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.policy.minimum_calls):
        await attempt(breaker, down)
    assert (await breaker.state()).state == "open"


async def test_opens_when_failure_rate_reaches_threshold(make: Make) -> None:
    breaker = make(
        window_size=10, minimum_calls=4, failure_rate_threshold=50.0, closed_lease_seconds=0
    )
    assert await breaker.call(ok) == "ok"
    await attempt(breaker, down)
    await breaker.call(ok)
    state = await breaker.state()
    assert (state.state, state.calls) == ("closed", 3)
    assert state.failure_rate == pytest.approx(100 / 3)

    await attempt(breaker, down)  # 2 of 4 failed: 50 %

    state = await breaker.state()
    assert state.state == "open"
    assert state.failure_rate == 50.0
    assert state.calls == 4
    assert state.retry_after >= 1


async def test_does_not_open_before_minimum_calls(make: Make) -> None:
    breaker = make(window_size=10, minimum_calls=5)
    for _ in range(4):
        await attempt(breaker, down)
    state = await breaker.state()
    assert (state.state, state.failure_rate, state.calls) == ("closed", 100.0, 4)

    await attempt(breaker, down)
    assert (await breaker.state()).state == "open"


async def test_window_slides_over_the_last_calls(make: Make) -> None:
    breaker = make(
        window_size=3, minimum_calls=3, failure_rate_threshold=60.0, closed_lease_seconds=0
    )
    await attempt(breaker, down)
    for _ in range(3):
        await breaker.call(ok)  # the old failure slides out
    state = await breaker.state()
    assert (state.state, state.calls, state.failure_rate) == ("closed", 3, 0.0)
    await attempt(breaker, down)
    assert (await breaker.state()).state == "closed"  # 1 of 3
    await attempt(breaker, down)
    assert (await breaker.state()).state == "open"  # 2 of 3


async def test_opens_on_slow_calls(make: Make, clock: Clock) -> None:
    breaker = make(minimum_calls=3, slow_call_seconds=0.05, slow_call_rate_threshold=60.0)

    async def slow() -> str:
        clock.advance(0.1)
        return "late"

    await breaker.call(ok)
    assert await breaker.call(slow) == "late"
    state = await breaker.state()
    assert (state.state, state.slow_rate) == ("closed", 50.0)
    await breaker.call(slow)  # 2 of 3 slow, no failure at all
    state = await breaker.state()
    assert state.state == "open"
    assert state.failure_rate == 0.0
    assert state.slow_rate == pytest.approx(200 / 3)


async def test_open_refuses_at_once_without_calling(make: Make, name: str) -> None:
    breaker = make(minimum_calls=2, open_seconds=10.0)
    await open_it(breaker)
    calls = 0

    async def counted() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    with pytest.raises(BreakerOpen) as refused:
        await breaker.call(counted)
    assert calls == 0
    assert isinstance(refused.value, Unavailable)
    assert refused.value.status_code == 503
    assert 1 <= refused.value.retry_after <= 10
    assert name in refused.value.detail
    with pytest.raises(BreakerOpen):
        await breaker.ensure_closed()
    state = await breaker.state()
    assert state.state == "open"
    assert 1 <= state.retry_after <= 10


async def test_half_open_admits_only_the_trial_calls(make: Make, name: str, clock: Clock) -> None:
    breaker = make(minimum_calls=2, open_seconds=30.0, half_open_calls=2)
    await open_it(breaker)
    clock.advance(30.0)
    assert (await breaker.state()).state == "half_open"
    await breaker.ensure_closed()  # half-open lets new work in, and takes no permit

    # Several clients (connection pools), as several processes would have.
    clients = [Redis.from_url(REDIS_URL, decode_responses=True) for _ in range(5)]
    breakers = [
        CircuitBreaker(c, name, breaker.policy, breaker.failure_exceptions, clock) for c in clients
    ]
    ran = 0
    refusals: list[BreakerOpen] = []
    release = asyncio.Event()

    async def trial() -> str:
        nonlocal ran
        ran += 1
        await release.wait()  # hold the permit until every caller has been answered
        return "ok"

    async def caller(b: CircuitBreaker) -> None:
        try:
            await b.call(trial)
        except BreakerOpen as exc:
            refusals.append(exc)
            if len(refusals) == 48:
                release.set()

    async def release_eventually() -> None:  # so a broken breaker fails, not hangs
        await asyncio.sleep(2)
        release.set()

    guard = asyncio.create_task(release_eventually())
    try:
        await asyncio.gather(*(caller(breakers[i % len(breakers)]) for i in range(50)))
    finally:
        guard.cancel()
        for c in clients:
            await c.aclose()

    assert ran == 2
    assert len(refusals) == 48
    assert {r.retry_after for r in refusals} == {1}
    state = await breaker.state()
    assert (state.state, state.calls, state.failure_rate) == ("closed", 0, 0.0)
    assert await breaker.call(ok) == "ok"


async def test_failed_trial_opens_again_for_a_fresh_period(make: Make, clock: Clock) -> None:
    breaker = make(minimum_calls=2, open_seconds=30.0, half_open_calls=2)
    await open_it(breaker)
    clock.advance(30.0)
    await breaker.call(ok)  # first trial fine
    await attempt(breaker, down)  # second trial fails

    state = await breaker.state()
    assert state.state == "open"
    assert state.retry_after == 30
    with pytest.raises(BreakerOpen):
        await breaker.call(ok)
    clock.advance(20.0)  # the old period would be over by now; the fresh one is not
    with pytest.raises(BreakerOpen):
        await breaker.ensure_closed()
    clock.advance(10.0)
    await breaker.call(ok)
    await breaker.call(ok)
    assert (await breaker.state()).state == "closed"


async def test_lost_trial_permit_is_granted_again(make: Make, clock: Clock) -> None:
    breaker = make(minimum_calls=2, open_seconds=30.0, half_open_calls=1)
    await open_it(breaker)
    clock.advance(30.0)

    started = asyncio.Event()

    async def hangs() -> str:
        started.set()
        await asyncio.sleep(60)
        return "never"

    crashed = asyncio.create_task(breaker.call(hangs))
    await started.wait()
    crashed.cancel()  # the trial's owner dies without a verdict
    with pytest.raises(asyncio.CancelledError):
        await crashed
    with pytest.raises(BreakerOpen) as refused:
        await breaker.call(ok)
    assert refused.value.retry_after == 1

    clock.advance(30.0)  # half-open for a whole open period without a verdict
    assert await breaker.call(ok) == "ok"
    assert (await breaker.state()).state == "closed"


async def test_other_exceptions_propagate_and_count_as_success(make: Make) -> None:
    breaker = make(minimum_calls=2, closed_lease_seconds=0)

    async def declined() -> str:
        raise Declined("card declined")

    for _ in range(3):
        with pytest.raises(Declined):
            await breaker.call(declined)
    state = await breaker.state()
    assert (state.state, state.failure_rate, state.calls) == ("closed", 0.0, 3)


async def test_another_process_sees_the_same_state(make: Make, name: str) -> None:
    breaker = make(minimum_calls=2, open_seconds=30.0)
    await open_it(breaker)
    script = textwrap.dedent(
        f"""
        import asyncio
        from redis.asyncio import Redis
        from app.platform.breaker import BreakerOpen, BreakerPolicy, CircuitBreaker, breaker_keys

        async def main():
            redis = Redis.from_url({REDIS_URL!r}, decode_responses=True)
            breaker = CircuitBreaker(redis, {name!r}, BreakerPolicy(open_seconds=30.0), ())
            state = await breaker.state()
            try:
                await breaker.ensure_closed()
                refused = "no"
            except BreakerOpen as exc:
                refused = f"refused {{exc.retry_after}}"
            print(state.state, refused)
            await redis.aclose()

        asyncio.run(main())
        """
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    state, refused, retry_after = done.stdout.split()
    assert (state, refused) == ("open", "refused")
    assert 1 <= int(retry_after) <= 30


async def test_works_with_a_bytes_client_and_expires_keys(name: str) -> None:
    client: Redis = Redis.from_url(REDIS_URL)  # decode_responses=False
    try:
        breaker = CircuitBreaker(client, name, BreakerPolicy(minimum_calls=2), (PartnerDown,))
        await open_it(breaker)
        assert (await breaker.state()).failure_rate == 100.0
        for key in breaker_keys(name):
            assert 0 < await client.ttl(key) <= 24 * 60 * 60
        await breaker.reset()
        state = await breaker.state()
        assert (state.state, state.calls) == ("closed", 0)
        assert await client.exists(*breaker_keys(name)) == 0
    finally:
        await client.delete(*breaker_keys(name))
        await client.aclose()


class CountingConnection(Connection):
    """A connection that counts what it sends: one ``send`` per round trip."""

    sends = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        await super().send_packed_command(command, check_health)


async def test_states_of_several_breakers_are_read_in_one_round_trip(clock: Clock) -> None:
    """What every order asks (are both partners up?): one pipeline for both breakers, each
    state its own; a Redis that forgot the script answers the same (loaded again)."""
    redis: Redis = Redis.from_url(
        REDIS_URL, decode_responses=True, connection_class=CountingConnection
    )
    names = [f"test-{uuid4().hex}" for _ in range(2)]
    first, second = (
        CircuitBreaker(redis, n, BreakerPolicy(minimum_calls=2), (PartnerDown,), clock)
        for n in names
    )
    try:
        await open_it(second)
        await first.state()  # both scripts known to Redis
        CountingConnection.sends = 0
        states = await read_states([first, second])
        assert CountingConnection.sends == 1
        assert [(s.name, s.state) for s in states if s] == [
            (names[0], "closed"),
            (names[1], "open"),
        ]
        assert states[1] is not None and states[1].retry_after >= 1

        await redis.script_flush()
        again = await read_states([first, second])
        assert [(s.name, s.state) for s in again if s] == [
            (names[0], "closed"),
            (names[1], "open"),
        ]
    finally:
        await redis.delete(*breaker_keys(names[0]), *breaker_keys(names[1]))
        await redis.aclose()


async def fail_until_open(breaker: CircuitBreaker) -> None:
    """Fail calls through ``breaker`` until it opens (other calls share its window)."""
    while (await breaker.state()).state != "open":
        await attempt(breaker, down)


async def test_a_closed_lease_lets_calls_through_without_asking_redis(
    make: Make, clock: Clock
) -> None:
    """Two processes' breakers of one name: the one that saw it closed trusts that for
    its lease, so a breaker the other opened reaches it a lease late at most; its own
    outcome coming back stale ends the lease at once."""
    here = make(minimum_calls=2, half_open_calls=1, closed_lease_seconds=1.0)
    there = make(minimum_calls=2, half_open_calls=1)
    assert await here.call(ok) == "ok"
    assert here.leased_generation() is not None
    await fail_until_open(there)

    await here.ensure_closed()  # within the lease: Redis is not asked
    assert await here.call(ok) == "ok"  # nor for the permit; its success is held back
    assert here.leased_generation() is not None
    clock.advance(0.5)
    assert await here.call(ok) == "ok"  # half the lease gone: sent, and found stale
    assert here.leased_generation() is None
    with pytest.raises(BreakerOpen):
        await here.call(ok)

    clock.advance(there.policy.open_seconds)
    await there.call(ok)  # the trial closes it on a new generation
    await here.ensure_closed()  # a state read: closed, leased again
    assert here.leased_generation() is not None


async def test_a_lease_ends_with_its_time(make: Make, clock: Clock) -> None:
    here, there = make(minimum_calls=2, closed_lease_seconds=1.0), make(minimum_calls=2)
    await here.ensure_closed()
    await fail_until_open(there)
    await here.ensure_closed()
    clock.advance(1.0)
    with pytest.raises(BreakerOpen):
        await here.ensure_closed()


async def test_outcomes_recorded_while_closed_renew_the_lease(make: Make, clock: Clock) -> None:
    """Under steady traffic the lease never runs out: each partner call costs one script
    (its outcome, which renews the lease from when it was sent), and this process's own
    failures still open the breaker."""
    breaker = make(minimum_calls=3, closed_lease_seconds=1.0)

    async def takes_most_of_a_lease() -> str:
        clock.advance(0.9)
        return "ok"

    for _ in range(3):
        assert await breaker.call(takes_most_of_a_lease) == "ok"
        clock.advance(0.5)  # 1.4 s after the permit: only the outcome's renewal holds
        assert breaker.leased_generation() is not None
    for _ in range(breaker.policy.window_size):
        await attempt(breaker, down)
        if breaker.leased_generation() is None:
            break
    assert (await breaker.state()).state == "open"
    with pytest.raises(BreakerOpen):
        await breaker.call(ok)


async def test_an_answer_older_than_a_drop_leases_nothing(make: Make, clock: Clock) -> None:
    """Answers on different connections come back in any order: a "closed" asked for
    before this process saw the breaker open must not lease it again."""
    breaker = make(minimum_calls=2, half_open_calls=1, closed_lease_seconds=1.0)
    asked_before = clock()
    clock.advance(0.1)
    await fail_until_open(breaker)
    breaker._lease_if(True, 0, asked_before)  # the late answer of a call sent before
    assert breaker.leased_generation() is None
    with pytest.raises(BreakerOpen):
        await breaker.call(ok)


async def test_without_a_lease_every_call_asks_redis(make: Make) -> None:
    here, there = make(minimum_calls=2, closed_lease_seconds=0.0), make(minimum_calls=2)
    assert await here.call(ok) == "ok"
    assert here.leased_generation() is None
    await fail_until_open(there)
    with pytest.raises(BreakerOpen):
        await here.ensure_closed()


async def test_a_leased_call_sends_at_most_its_outcome(clock: Clock, name: str) -> None:
    redis: Redis = Redis.from_url(
        REDIS_URL, decode_responses=True, connection_class=CountingConnection
    )
    breaker = CircuitBreaker(
        redis, name, BreakerPolicy(closed_lease_seconds=1.0), (PartnerDown,), clock
    )
    try:
        await breaker.state()  # the state script known to Redis
        await breaker.reset()

        async def slow_ok() -> str:  # a slow call's outcome is never held back
            clock.advance(breaker.policy.slow_call_seconds)
            return "ok"

        await breaker.call(slow_ok)  # and the permit's and the outcome's
        clock.advance(1.0)
        CountingConnection.sends = 0
        await breaker.call(ok)
        assert CountingConnection.sends == 1  # the lease ran out: the permit only
        await breaker.call(ok)
        await breaker.ensure_closed()
        assert CountingConnection.sends == 1, "successes within the lease are held back"
        clock.advance(0.5)
        await breaker.call(ok)
        assert CountingConnection.sends == 2, "half the lease gone: one outcome carries all"
        assert (await breaker.state()).calls == 1 + 3, "the slow call, then the three"
    finally:
        await redis.delete(*breaker_keys(name))
        await redis.aclose()


async def test_held_successes_reach_the_window_before_a_failure(make: Make, clock: Clock) -> None:
    """A failure carries the successes held before it, so the window judges them all: three
    held successes and two failures are 40 %, below a 50 % threshold."""
    breaker = make(minimum_calls=5, failure_rate_threshold=50.0, closed_lease_seconds=1.0)
    for _ in range(3):
        assert await breaker.call(ok) == "ok"
    assert (await breaker.state()).calls == 0, "held back within the lease"
    await attempt(breaker, down)
    await attempt(breaker, down)
    state = await breaker.state()
    assert (state.state, state.calls, state.failure_rate) == ("closed", 5, 40.0)


async def test_successes_held_under_an_ended_generation_are_dropped(
    make: Make, clock: Clock
) -> None:
    here = make(minimum_calls=2, half_open_calls=1, closed_lease_seconds=1.0)
    there = make(minimum_calls=2, half_open_calls=1)
    await here.call(ok)  # held under the first generation
    await fail_until_open(there)
    clock.advance(there.policy.open_seconds)
    await there.call(ok)  # a trial closes it: a new generation, an empty window
    await here.ensure_closed()  # closed again, leased at the new generation
    await attempt(here, down)  # sent at once, without the old generation's success
    assert (await here.state()).calls == 1
