"""The customer's delivery window, estimated from how long each stage really takes.

Each kitchen and road stage has a spread (quartiles and median of its duration over
recent deliveries; the shop's settings until there are enough of them). The window is
"now + what is left of the current stage + every stage still to come", low quartiles for
the earliest time, high quartiles for the latest. Once a rider has the order, the
delivery partner's own estimate of its arrival anchors the window. The promise is the
window as it stood at payment, moved once to the rider's first estimate when a rider took
the order while its pizzas were still in the kitchen (``firstPartnerEta``): the shop knows
its kitchen at payment but not the road, and a customer told "running late" three
seconds after paying, before anything happened, was told something untrue. A window that
moved past the promise means the order runs late (a stage overran, the rider's estimate
slipped, or no rider took the order before its pizzas were ready). A rider's estimate
given once the shop's own stages had already broken the promise made at payment moves
nothing: it would have taken the apology back from an order that was late.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

#: the stages between payment and the customer's door, in order
STAGES = ("queued", "preparing", "baking", "ready", "out_for_delivery")
#: the stages during which a rider's first estimate still sets the promise
KITCHEN = STAGES[: STAGES.index("ready")]
#: fewer samples than this and the shop's settings speak for the stage
MIN_SAMPLES = 5
#: the shortest a stage may be taken to last, as a share of its typical time in the
#: settings (``ETA_STAGE_MINUTES``), however quickly it was clicked through lately
FLOOR_SHARE = 0.5
#: how far either side of the partner's estimate the window reaches
PARTNER_EARLY = timedelta(minutes=3)
PARTNER_LATE = timedelta(minutes=5)
#: a window is never narrower than this, nor its latest time closer than this to now
MIN_WIDTH = timedelta(minutes=5)
MIN_AHEAD = timedelta(minutes=1)
#: both times are rounded up to the minute: a window one minute past the promise is the
#: rounding of a few seconds, not an order running late
LATE_AFTER = timedelta(minutes=1)


@dataclass(frozen=True)
class Spread:
    """How long a stage takes, in seconds: quick (p25), typical (median), slow (p75)."""

    low: float
    mid: float
    high: float


Stats = dict[str, Spread]


@dataclass(frozen=True)
class Window:
    earliest: datetime
    latest: datetime
    #: the latest time the shop promised at payment
    promised: datetime
    #: the order can no longer make its promise: the customer is told, with this window
    late: bool


def fallback_stats(stage_minutes: dict[str, float]) -> Stats:
    """The settings' typical minutes per stage, ±25 %."""
    return {
        stage: Spread(low=m * 60 * 0.75, mid=m * 60, high=m * 60 * 1.25)
        for stage, m in ((s, stage_minutes.get(s, 5.0)) for s in STAGES)
    }


def stats_from(durations: dict[str, list[float]], fallback: Stats) -> Stats:
    """Quartiles per stage from recent durations; a stage with too little history keeps
    its fallback. History refines the shop's settings but may not make a stage shorter
    than ``FLOOR_SHARE`` of its typical time there: stages clicked through in bulk (a
    cook who marks "preparing", "in the oven" and "ready" at once) took seconds, and a
    shop that learned from them promised pizzas in five minutes, then called every order
    that took longer late."""
    stats = dict(fallback)
    for stage in STAGES:
        samples = sorted(durations.get(stage, []))
        if len(samples) >= MIN_SAMPLES:
            q1, q2, q3 = statistics.quantiles(samples, n=4)
            least = fallback[stage]
            stats[stage] = Spread(
                low=max(q1, FLOOR_SHARE * least.low),
                mid=max(q2, FLOOR_SHARE * least.mid),
                high=max(q3, FLOOR_SHARE * least.high),
            )
    return stats


def promised_by(paid_at: datetime, stats: Stats) -> datetime:
    """The latest delivery time the shop promises at payment (whole minutes): the latest
    time of the window shown then, clamped as every window is (with stages as steady
    as their quartiles are close, "highs" alone fell short of a window at least
    ``MIN_WIDTH`` wide, and the order read late the moment it was paid)."""
    earliest, latest = _own_window("queued", paid_at, stats, paid_at)
    return _clamped(latest, earliest, paid_at)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _stage_start(doc: dict[str, Any], status: str) -> datetime | None:
    for entry in reversed(doc.get("timeline") or []):
        if entry["status"] == status:
            return _time(entry["at"])
    return None


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def estimate(doc: dict[str, Any], stats: Stats, now: datetime) -> Window | None:
    """The delivery window of an order view, from payment until it is delivered."""
    if doc.get("status") != "paid":
        return None  # not paid yet, or delivered, cancelled, failed: no window
    delivery = doc.get("delivery") or {}
    stage = delivery.get("status") or "queued"
    if stage not in STAGES:
        return None
    paid_at = _stage_start(doc, "paid") or _time(doc["createdAt"])
    entered = _stage_start(doc, stage) or paid_at
    earliest, latest = _own_window(stage, entered, stats, now)

    partner_eta = delivery.get("partnerEta")
    if partner_eta and delivery.get("courierStatus") == "assigned":
        eta = _time(partner_eta)
        earliest = (
            max(earliest, eta - PARTNER_EARLY)
            if stage != "out_for_delivery"
            else (eta - PARTNER_EARLY)
        )
        latest = (
            max(latest, eta + PARTNER_LATE) if stage != "out_for_delivery" else (eta + PARTNER_LATE)
        )

    earliest = max(earliest, now)
    latest = _clamped(latest, earliest, now)
    promised = _promise(doc, delivery, stats, paid_at)
    return Window(
        earliest=_minute(earliest),
        latest=latest,
        promised=promised,
        late=latest > promised + LATE_AFTER,
    )


def _own_window(
    stage: str, entered: datetime, stats: Stats, now: datetime
) -> tuple[datetime, datetime]:
    """Earliest and latest arrival by the shop's stage statistics alone, at ``now``."""
    elapsed = max((now - entered).total_seconds(), 0.0)
    later = STAGES[STAGES.index(stage) + 1 :]
    current = stats[stage]
    earliest = now + _seconds(max(current.low - elapsed, 0.0) + sum(stats[s].low for s in later))
    latest = now + _seconds(max(current.high - elapsed, 0.0) + sum(stats[s].high for s in later))
    return earliest, latest


def _promise(
    doc: dict[str, Any], delivery: dict[str, Any], stats: Stats, paid_at: datetime
) -> datetime:
    """The promise at payment, or the rider's first estimate (with ``PARTNER_LATE``) when
    it came later and the shop's own stages had not broken the promise by then: an
    estimate given while the oven was already late excuses nothing."""
    kept = doc.get("promisedBy")  # as made at payment (views from before: computed now)
    at_payment = _time(kept) if kept else promised_by(paid_at, stats)
    first_eta, given_at = delivery.get("firstPartnerEta"), delivery.get("firstPartnerEtaAt")
    if not first_eta or not given_at:
        return at_payment
    given = _time(given_at)
    stage, entered = _stage_at(doc, given, paid_at)
    earliest, latest = _own_window(stage, entered, stats, given)
    if _clamped(latest, earliest, given) > at_payment + LATE_AFTER:
        return at_payment
    return max(at_payment, _minute(_time(first_eta) + PARTNER_LATE, up=True))


def _stage_at(doc: dict[str, Any], at: datetime, paid_at: datetime) -> tuple[str, datetime]:
    """The stage the timeline shows at ``at``, and since when (queued from payment)."""
    stage, entered = "queued", paid_at
    for entry in doc.get("timeline") or []:
        when = _time(entry["at"])
        if entry["status"] in STAGES and when <= at and when >= entered:
            stage, entered = entry["status"], when
    return stage, entered


def _clamped(latest: datetime, earliest: datetime, now: datetime) -> datetime:
    """The latest time as shown: ahead of now, a window wide enough, whole minutes."""
    return _minute(max(latest, now + MIN_AHEAD, max(earliest, now) + MIN_WIDTH), up=True)


def _minute(value: datetime, up: bool = False) -> datetime:
    """Whole minutes: a person reads "19:40-19:55", not seconds."""
    floored = value.replace(second=0, microsecond=0)
    return floored + timedelta(minutes=1) if up and floored != value else floored
