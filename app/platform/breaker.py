"""Circuit breakers whose state lives in Redis, shared by every web and worker process.

Semantics follow resilience4j:

- **closed**: every call goes through; its outcome (failure and/or slow) is pushed onto a
  count-based sliding window of the last ``window_size`` calls. Once the window holds at
  least ``minimum_calls`` outcomes, the breaker opens when the failure rate or the slow-call
  rate reaches its threshold.
- **open** for ``open_seconds``: every call is refused at once with :class:`BreakerOpen`
  (a 503 with ``Retry-After``); the partner is not called.
- **half_open**: at most ``half_open_calls`` trial calls are let through, across all
  processes. One failed trial opens the breaker again for a fresh period; once every trial
  has come back without a failure the breaker closes with an empty window (unless the
  trials were too slow, judged by the slow-call rate). If half-open lasts longer than
  ``open_seconds`` without a verdict (a trial's owner crashed), the permits whose outcome
  never came back are granted again.

Only exceptions in ``failure_exceptions`` count as failures. Any other exception propagates
and counts as a success: a declined card is a healthy partner.

Every transition happens inside a Lua script, with Redis server ``TIME`` as the only clock,
so concurrent callers in different processes can never both take the last trial permit.
(A test passes its own ``clock`` instead, and moves time on without sleeping.)
A ``generation`` counter bumps on every transition; an outcome recorded under an older
generation (a call that started before the breaker moved) is ignored.

Keys: ``breaker:{name}`` (hash) and ``breaker:{name}:window`` (list of outcome codes,
newest first), both expiring a day after the last write so abandoned breakers vanish.

**The closed lease** (``closed_lease_seconds``, 0 to turn it off): a process that has just
seen its breaker closed, from a permit, an outcome or a state read, trusts that for the
lease and lets calls through without asking Redis; every outcome is still recorded (plain
successes a little later, below), and an outcome recorded while closed renews the lease.
The price: a breaker opened by another process is seen here up to a lease late (sooner
when an outcome of ours comes back stale), so the lease stays far below the open period.

**Held successes**: within its lease a process does not send each plain success (not
slow, under a normal permit) on its own: it holds them back while the lease has more
than half of it left, and the first outcome sent after that (any failure or slow call
at once) carries them to Redis in its one script, pushed onto the window just before
it. Under steady traffic a partner call then costs one script every half lease per
process, not one per call (and a permit none: the outcome that carries them renews the
lease). The price: a process's successes reach the window up to half a lease late (in a
quiet shop, with its next outcome sent), in a slightly different order from other
processes' outcomes of that time; held successes of a generation that has ended are
dropped, as their outcome would be, and a process that stops loses the few it held
(successes: the breaker stays as closed as it was).

If Redis itself is unreachable the breaker fails open: the call goes through unguarded and
a warning is logged. A Redis error never hides the result of a partner call that happened.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from app.platform.errors import Unavailable
from app.platform.i18n import N_
from app.platform.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

StateName = Literal["closed", "open", "half_open"]

TTL_SECONDS = 24 * 60 * 60

_CLOSED, _OPEN, _HALF_OPEN = 0, 1, 2
_STATE_NAMES: dict[int, StateName] = {_CLOSED: "closed", _OPEN: "open", _HALF_OPEN: "half_open"}
_KIND_NORMAL, _KIND_TRIAL = 0, 1
# Outcome codes stored in the window: bit 0 = failure, bit 1 = slow.
_FAILURE_BIT, _SLOW_BIT = 1, 2


@dataclass(frozen=True)
class BreakerPolicy:
    window_size: int = 20
    minimum_calls: int = 10
    failure_rate_threshold: float = 50.0  # percent
    slow_call_rate_threshold: float = 80.0  # percent
    slow_call_seconds: float = 2.0
    open_seconds: float = 15.0
    half_open_calls: int = 3
    closed_lease_seconds: float = 0.25

    def __post_init__(self) -> None:
        if self.window_size < 1:
            raise ValueError("window_size must be at least 1")
        if self.minimum_calls < 1:
            raise ValueError("minimum_calls must be at least 1")
        if self.half_open_calls < 1:
            raise ValueError("half_open_calls must be at least 1")
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            value = getattr(self, name)
            if not 0 < value <= 100:
                raise ValueError(f"{name} must be in (0, 100]")
        if self.slow_call_seconds <= 0:
            raise ValueError("slow_call_seconds must be positive")
        if self.open_seconds <= 0:
            raise ValueError("open_seconds must be positive")
        if not 0 <= self.closed_lease_seconds < self.open_seconds:
            raise ValueError("closed_lease_seconds must be at least 0 and below open_seconds")

    @property
    def effective_minimum_calls(self) -> int:
        """A count window never holds more than ``window_size`` calls (as in resilience4j)."""
        return min(self.minimum_calls, self.window_size)

    @property
    def open_ms(self) -> int:
        return max(1, round(self.open_seconds * 1000))

    @classmethod
    def from_settings(cls, settings: Settings) -> BreakerPolicy:
        b = settings.breaker
        return cls(
            window_size=b.window_size,
            minimum_calls=b.minimum_calls,
            failure_rate_threshold=b.failure_rate,
            slow_call_rate_threshold=b.slow_call_rate,
            slow_call_seconds=b.slow_call_seconds,
            open_seconds=b.open_seconds,
            half_open_calls=b.half_open_calls,
            closed_lease_seconds=b.closed_lease_seconds,
        )


def retry_after_seconds(remaining_ms: int) -> int:
    """Whole seconds a refused caller should wait: rounded up, never below 1."""
    return max(1, math.ceil(remaining_ms / 1000))


class BreakerOpen(Unavailable):
    """A call was refused because the partner's breaker is open (503 + Retry-After)."""

    def __init__(self, name: str, retry_after: int) -> None:
        super().__init__(
            N_(
                "%(name)s is temporarily unavailable; please try again in %(seconds)s s",
                name=name,
                seconds=retry_after,
            ),
            retry_after=retry_after,
            code=f"{name}_unavailable",
        )
        self.name = name


@dataclass(frozen=True)
class BreakerState:
    name: str
    state: StateName
    failure_rate: float  # percent of the calls in the window
    slow_rate: float  # percent of the calls in the window
    calls: int  # outcomes in the window (trial outcomes while half-open)
    retry_after: int  # 0 unless open


# Shared Lua prologue: the clock in ms (the last ARGV when the breaker has a clock of its
# own, else the server's), and the current hash fields.
_PROLOGUE = """
local now = tonumber(ARGV[#ARGV])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local h = redis.call('HMGET', KEYS[1], 'st', 'gen', 'since', 'permits')
local st = tonumber(h[1]) or 0
local gen = tonumber(h[2]) or 0
local since = tonumber(h[3]) or 0
local permits = tonumber(h[4]) or 0
"""

# ARGV: open_ms, half_open_calls, ttl_seconds, now_ms (or "")
# Returns {allowed, generation, kind, remaining_ms}
_ACQUIRE = (
    _PROLOGUE
    + """
local open_ms = tonumber(ARGV[1])
local half_open_calls = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
if st == 0 then
  return {1, gen, 0, 0}
end
if st == 1 then
  local left = since + open_ms - now
  if left > 0 then
    return {0, gen, 0, left}
  end
  st = 2
  gen = gen + 1
  since = now
  permits = 0
  redis.call('DEL', KEYS[2])
elseif permits >= half_open_calls and now - since >= open_ms then
  -- Half-open without a verdict for a whole open period: a trial's owner is gone.
  -- Hand out again the permits whose outcome never came back; recorded ones stay.
  permits = redis.call('LLEN', KEYS[2])
  since = now
end
if permits >= half_open_calls then
  redis.call('HSET', KEYS[1], 'st', st, 'gen', gen, 'since', since, 'permits', permits)
  redis.call('EXPIRE', KEYS[1], ttl)
  return {0, gen, 1, 0}
end
permits = permits + 1
redis.call('HSET', KEYS[1], 'st', st, 'gen', gen, 'since', since, 'permits', permits)
redis.call('EXPIRE', KEYS[1], ttl)
return {1, gen, 1, 0}
"""
)

# Counts failures and slow calls among the window's outcome codes.
_COUNT = """
local function count(key)
  local items = redis.call('LRANGE', key, 0, -1)
  local failures, slows = 0, 0
  for _, v in ipairs(items) do
    local code = tonumber(v)
    if code % 2 == 1 then failures = failures + 1 end
    if math.floor(code / 2) % 2 == 1 then slows = slows + 1 end
  end
  return #items, failures, slows
end
"""

# ARGV: generation, kind, outcome, window_size, minimum_calls, failure_threshold,
#       slow_threshold, half_open_calls, ttl_seconds, held successes, now_ms (or "")
# Returns the state after recording, or -1 when the outcome was stale and ignored.
_RECORD = (
    _PROLOGUE
    + _COUNT
    + """
local call_gen = tonumber(ARGV[1])
local kind = tonumber(ARGV[2])
local outcome = tonumber(ARGV[3])
local window_size = tonumber(ARGV[4])
local minimum_calls = tonumber(ARGV[5])
local failure_threshold = tonumber(ARGV[6])
local slow_threshold = tonumber(ARGV[7])
local half_open_calls = tonumber(ARGV[8])
local ttl = tonumber(ARGV[9])
local held = math.min(tonumber(ARGV[10]), window_size)
if call_gen ~= gen then
  return -1
end
local function open_now()
  redis.call('HSET', KEYS[1], 'st', 1, 'gen', gen + 1, 'since', now, 'permits', 0)
end
if st == 0 and kind == 0 then
  for _ = 1, held do
    redis.call('LPUSH', KEYS[2], 0)
  end
  redis.call('LPUSH', KEYS[2], outcome)
  redis.call('LTRIM', KEYS[2], 0, window_size - 1)
  local n, failures, slows = count(KEYS[2])
  if n >= minimum_calls and
     (failures * 100 >= failure_threshold * n or slows * 100 >= slow_threshold * n) then
    open_now()
    st = 1
  end
elseif st == 2 and kind == 1 then
  redis.call('LPUSH', KEYS[2], outcome)
  local n, failures, slows = count(KEYS[2])
  if failures > 0 then
    open_now()
    st = 1
  elseif n >= half_open_calls then
    if slows * 100 >= slow_threshold * n then
      open_now()
      st = 1
    else
      redis.call('HSET', KEYS[1], 'st', 0, 'gen', gen + 1, 'since', now, 'permits', 0)
      redis.call('DEL', KEYS[2])
      st = 0
    end
  end
else
  return -1
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return st
"""
)

# ARGV: open_ms, now_ms (or ""). Read-only.
# Returns {state, calls, failures, slows, remaining_ms, generation}
# An open breaker whose period is over is reported as half-open (what the next call sees).
_STATE = (
    _PROLOGUE
    + _COUNT
    + """
local open_ms = tonumber(ARGV[1])
local n, failures, slows = count(KEYS[2])
if st == 1 then
  local left = since + open_ms - now
  if left > 0 then
    return {1, n, failures, slows, left, gen}
  end
  return {2, 0, 0, 0, 0, gen}
end
return {st, n, failures, slows, 0, gen}
"""
)


def breaker_keys(name: str) -> list[str]:
    """The breaker's state hash and its outcome window, in one cluster slot."""
    return [f"breaker:{{{name}}}", f"breaker:{{{name}}}:window"]


class CircuitBreaker:
    """A named breaker; every instance with the same name on the same Redis shares state."""

    def __init__(
        self,
        redis: Redis,
        name: str,
        policy: BreakerPolicy,
        failure_exceptions: tuple[type[BaseException], ...],
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` (seconds) replaces Redis server ``TIME`` for the open period and
        ``time.monotonic`` for how long a call took: a test's fake clock, never production
        (every process must read the one shared clock)."""
        self.redis = redis
        self.name = name
        self.policy = policy
        self.failure_exceptions = failure_exceptions
        self._clock = clock
        self._elapsed_clock = clock or time.monotonic
        # one hash tag for both: the scripts touch both keys, which must share a slot
        # when the state Redis is a cluster
        self._keys = breaker_keys(name)
        self._acquire = redis.register_script(_ACQUIRE)
        self._record = redis.register_script(_RECORD)
        self._state = redis.register_script(_STATE)
        #: ``(generation, until)``: seen closed at that generation, trusted until then
        #: (``_elapsed_clock``); see "the closed lease" above
        self._lease: tuple[int, float] | None = None
        #: when the lease was last dropped: an answer asked for before then is older than
        #: what dropped it (answers on other connections come back in any order)
        self._dropped_at = -math.inf
        #: ``(generation, count)``: plain successes held back (see "held successes")
        self._held: tuple[int, int] | None = None

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` if the breaker lets it through, and record how it went.

        Raises :class:`BreakerOpen` when refused, without calling ``fn``.
        """
        leased = self.leased_generation()
        permit = (leased, _KIND_NORMAL) if leased is not None else await self._try_acquire()
        started = self._elapsed_clock()
        try:
            result = await fn()
        except self.failure_exceptions:
            await self._try_record(permit, self._elapsed_clock() - started, failed=True)
            raise
        except Exception:
            # Not a partner failure (a decline, a validation error): the partner is healthy.
            await self._try_record(permit, self._elapsed_clock() - started, failed=False)
            raise
        await self._try_record(permit, self._elapsed_clock() - started, failed=False)
        return result

    async def ensure_closed(self) -> None:
        """Raise :class:`BreakerOpen` if a new call would be refused right now.

        Half-open counts as "not refused": the caller may become a trial. Within a closed
        lease, Redis is not asked.
        """
        if self.leased_generation() is None:
            refuse_if_open(await self.state_or_none())

    async def state(self) -> BreakerState:
        asked_at = self._elapsed_clock()
        raw = await self._state(keys=self._keys, args=self._state_args())
        return self._state_of(raw, asked_at)

    def _state_args(self) -> list[Any]:
        return [self.policy.open_ms, self._now()]

    def _state_of(self, raw: Any, asked_at: float) -> BreakerState:
        """The state as ``_STATE`` answered it, asked at ``asked_at`` (which also takes or
        drops the lease)."""
        st, calls, failures, slows, remaining_ms, generation = (int(x) for x in raw)
        self._lease_if(st == _CLOSED, generation, asked_at)
        return BreakerState(
            name=self.name,
            state=_STATE_NAMES[st],
            failure_rate=100.0 * failures / calls if calls else 0.0,
            slow_rate=100.0 * slows / calls if calls else 0.0,
            calls=calls,
            retry_after=retry_after_seconds(remaining_ms) if st == _OPEN else 0,
        )

    async def state_or_none(self) -> BreakerState | None:
        """The state, or ``None`` (logged) when Redis cannot be reached."""
        try:
            return await self.state()
        except RedisError as exc:
            log.warning("breaker %s: state unavailable (%r); failing open", self.name, exc)
            return None

    def _now(self) -> str:
        """The scripts' last argument: our clock in ms, or "" for Redis server ``TIME``."""
        return "" if self._clock is None else str(round(self._clock() * 1000))

    async def reset(self) -> None:
        """Forget everything: closed, empty window. For tests and staff."""
        await self.redis.delete(*self._keys)
        self._drop_lease()
        self._held = None

    def leased_generation(self) -> int | None:
        """The generation this process saw closed, while its lease lasts; else None."""
        lease = self._lease
        if lease is None or self._elapsed_clock() >= lease[1]:
            return None
        return lease[0]

    def _lease_if(self, closed: bool, generation: int, asked_at: float) -> None:
        """Trust ``closed`` at ``generation`` for a lease from ``asked_at`` (when Redis was
        asked, not when its answer got its turn on a busy loop: the lease bounds how late
        an opening is seen); forget the lease otherwise. A "closed" asked for before the
        lease was last dropped is older than what dropped it, and leases nothing."""
        seconds = self.policy.closed_lease_seconds
        if not closed or seconds <= 0:
            self._drop_lease()
        elif asked_at >= self._dropped_at:
            self._lease = (generation, asked_at + seconds)

    def _drop_lease(self) -> None:
        self._lease = None
        self._dropped_at = self._elapsed_clock()

    async def _try_acquire(self) -> tuple[int, int] | None:
        """``(generation, kind)`` of the permit, ``None`` if Redis is down (fail open)."""
        asked_at = self._elapsed_clock()
        try:
            raw: Any = await self._acquire(
                keys=self._keys,
                args=[self.policy.open_ms, self.policy.half_open_calls, TTL_SECONDS, self._now()],
            )
        except RedisError as exc:
            log.warning("breaker %s: cannot acquire (%r); failing open", self.name, exc)
            return None
        allowed, generation, kind, remaining_ms = (int(x) for x in raw)
        self._lease_if(bool(allowed) and kind == _KIND_NORMAL, generation, asked_at)
        if not allowed:
            retry_after = retry_after_seconds(remaining_ms) if kind == _KIND_NORMAL else 1
            raise BreakerOpen(self.name, retry_after)
        return generation, kind

    async def _try_record(
        self, permit: tuple[int, int] | None, elapsed: float, *, failed: bool
    ) -> None:
        if permit is None:
            return
        generation, kind = permit
        outcome = (_FAILURE_BIT if failed else 0) | (
            _SLOW_BIT if elapsed >= self.policy.slow_call_seconds else 0
        )
        if outcome == 0 and kind == _KIND_NORMAL and self._hold(generation):
            return
        held = self._take_held(generation) if kind == _KIND_NORMAL else 0
        p = self.policy
        asked_at = self._elapsed_clock()
        try:
            new_state = await self._record(
                keys=self._keys,
                args=[
                    generation,
                    kind,
                    outcome,
                    p.window_size,
                    p.effective_minimum_calls,
                    p.failure_rate_threshold,
                    p.slow_call_rate_threshold,
                    p.half_open_calls,
                    TTL_SECONDS,
                    held,
                    self._now(),
                ],
            )
        except RedisError as exc:
            log.warning("breaker %s: cannot record outcome (%r)", self.name, exc)
            return
        # still closed at the permit's generation (a trial that closed it moved the
        # generation on; a stale outcome means another process moved it)
        self._lease_if(kind == _KIND_NORMAL and int(new_state) == _CLOSED, generation, asked_at)
        if int(new_state) == _OPEN:
            log.warning("breaker %s: opened", self.name)

    def _hold(self, generation: int) -> bool:
        """Hold back a plain success of ``generation`` while this process's lease on it
        has more than half of it left; False when it must be recorded now (with what was
        held: ``_take_held``)."""
        lease = self._lease
        if lease is None or lease[0] != generation:
            return False
        if lease[1] - self._elapsed_clock() <= self.policy.closed_lease_seconds / 2:
            return False
        held_generation, count = self._held or (generation, 0)
        self._held = (generation, count + 1 if held_generation == generation else 1)
        return True

    def _take_held(self, generation: int) -> int:
        """The successes held back under ``generation``, now to be recorded (none held
        under an older one: its outcomes would be ignored as stale)."""
        held, self._held = self._held, None
        return held[1] if held is not None and held[0] == generation else 0


def refuse_if_open(state: BreakerState | None) -> None:
    """Raise :class:`BreakerOpen` for an open breaker's state; an unknown state (Redis
    away) fails open."""
    if state is not None and state.state == "open":
        raise BreakerOpen(state.name, state.retry_after)


async def read_states(breakers: Sequence[CircuitBreaker]) -> list[BreakerState | None]:
    """The states of several breakers, in one round trip when they share one Redis that
    is not a cluster (their keys are in different slots); ``None`` for a state that
    cannot be read (each caller fails open, as ``state_or_none`` does)."""
    redis = breakers[0].redis if breakers else None
    if isinstance(redis, Redis) and all(b.redis is redis for b in breakers):
        states = await _pipelined_states(redis, breakers)
        if states is not None:
            return states
    # a cluster, several clients, or a Redis that forgot the script: one by one, which
    # loads the script again
    return [await breaker.state_or_none() for breaker in breakers]


async def _pipelined_states(
    redis: Redis, breakers: Sequence[CircuitBreaker]
) -> list[BreakerState | None] | None:
    """The states in one pipeline; None when Redis does not know the script."""
    asked_at = [breaker._elapsed_clock() for breaker in breakers]
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for breaker in breakers:
                pipe.evalsha(breaker._state.sha, 2, *breaker._keys, *breaker._state_args())
            answers = await pipe.execute(raise_on_error=False)
    except RedisError as exc:
        log.warning("breakers: states unavailable (%r); failing open", exc)
        return [None] * len(breakers)
    if any(isinstance(answer, NoScriptError) for answer in answers):
        return None
    return [
        None if isinstance(answer, Exception) else breaker._state_of(answer, asked)
        for breaker, answer, asked in zip(breakers, answers, asked_at, strict=True)
    ]
