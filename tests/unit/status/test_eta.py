"""The delivery window: from stage statistics, anchored by the partner, late when it slips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.status.eta import STAGES, estimate, fallback_stats, stats_from

PAID = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
MINUTES = {"queued": 4, "preparing": 6, "baking": 8, "ready": 2, "out_for_delivery": 10}
#: settings of a shop that expects every stage to take no time: history has no floor
NO_FLOOR = fallback_stats(dict.fromkeys(STAGES, 0.0))


def doc(stage: str | None, entered: datetime | None = None, **delivery: Any) -> dict[str, Any]:
    timeline = [{"at": PAID.isoformat(), "status": "paid", "detail": ""}]
    if stage:
        timeline.append({"at": (entered or PAID).isoformat(), "status": stage, "detail": ""})
    return {
        "status": "paid",
        "createdAt": PAID.isoformat(),
        "timeline": timeline,
        "delivery": {"status": stage, "courierStatus": "requested", **delivery} if stage else None,
    }


def test_at_payment_the_window_spans_every_stage_from_the_settings() -> None:
    window = estimate(doc(None), fallback_stats(MINUTES), PAID)
    assert window is not None
    total = sum(MINUTES.values())  # 30 minutes typical, ±25 %
    # whole minutes: 22.5 → 18:22, 37.5 → 18:38
    assert window.earliest == PAID + timedelta(minutes=22)
    assert window.latest == PAID + timedelta(minutes=38)
    assert total * 0.75 == 22.5 and total * 1.25 == 37.5
    assert window.promised == window.latest and not window.late


def test_history_replaces_the_settings_once_there_is_enough_of_it() -> None:
    durations = {stage: [60.0 * m for m in (5, 6, 6, 6, 7)] for stage in STAGES}
    stats = stats_from(durations, fallback_stats(MINUTES))
    assert stats["baking"].mid == 360.0
    assert stats["baking"].low < stats["baking"].mid < stats["baking"].high
    few = stats_from({"baking": [1.0, 2.0]}, fallback_stats(MINUTES))
    assert few["baking"].mid == 8 * 60  # two samples are not a trend


def test_a_later_stage_narrows_the_window_and_the_partner_estimate_anchors_it() -> None:
    stats = fallback_stats(MINUTES)
    baking = estimate(
        doc("baking", PAID + timedelta(minutes=10)), stats, PAID + timedelta(minutes=10)
    )
    at_payment = estimate(doc(None), stats, PAID)
    assert baking is not None and at_payment is not None
    assert baking.latest - baking.earliest < at_payment.latest - at_payment.earliest

    eta = PAID + timedelta(minutes=24)
    now = PAID + timedelta(minutes=20)
    riding = doc("out_for_delivery", now, courierStatus="assigned", partnerEta=eta.isoformat())
    window = estimate(riding, stats, now)
    assert window is not None
    assert window.earliest <= eta <= window.latest
    assert window.latest - window.earliest <= timedelta(minutes=9)


def test_a_stage_that_overruns_moves_the_window_and_says_late() -> None:
    stats = fallback_stats(MINUTES)
    now = PAID + timedelta(minutes=60)  # still in the oven an hour after payment
    window = estimate(doc("baking", PAID + timedelta(minutes=10)), stats, now)
    assert window is not None and window.late
    assert window.earliest >= now.replace(second=0) and window.latest > window.promised


def test_no_window_before_payment_or_after_delivery() -> None:
    stats = fallback_stats(MINUTES)
    for status in ("placed", "payment_failed", "cancelled", "fulfilled"):
        assert estimate({**doc(None), "status": status}, stats, PAID) is None


def test_a_shop_that_delivers_in_seconds_is_not_late_by_the_rounding_of_a_minute() -> None:
    """History of instant stages: the promise and the window both clamp to five minutes
    and round up to the minute; a page shown two seconds later may round one minute
    further, which is not lateness. Two minutes of slipping is."""
    instant = stats_from({stage: [0.0] * 8 for stage in STAGES}, NO_FLOOR)
    paid = PAID + timedelta(seconds=59)
    fresh = {**doc("queued", paid), "createdAt": paid.isoformat()}
    fresh["timeline"][0]["at"] = paid.isoformat()
    shown = estimate(fresh, instant, paid + timedelta(seconds=2))
    assert shown is not None and shown.latest > shown.promised and not shown.late
    slipped = estimate(fresh, instant, paid + timedelta(minutes=2, seconds=2))
    assert slipped is not None and slipped.late


def test_a_rider_who_takes_the_order_in_the_kitchen_sets_the_promise_with_the_road() -> None:
    """A shop whose recent stages took seconds promised five minutes at payment; the rider,
    assigned three seconds later, says twelve. The customer was not late three seconds
    after paying: the rider's first estimate is the promise. Its slipping later is late."""
    quick = stats_from({stage: [5.0] * 8 for stage in STAGES}, NO_FLOOR)
    now = PAID + timedelta(seconds=3)
    eta = now + timedelta(minutes=12)
    assigned = doc("queued", PAID, courierStatus="assigned", partnerEta=eta.isoformat())

    before_any_estimate = estimate(assigned, quick, now)  # no first estimate kept (old views)
    assert before_any_estimate is not None and before_any_estimate.late

    given = {"firstPartnerEta": eta.isoformat(), "firstPartnerEtaAt": now.isoformat()}
    first = {**assigned, "delivery": {**assigned["delivery"], **given}}
    window = estimate(first, quick, now)
    assert window is not None and not window.late
    assert window.promised == PAID + timedelta(minutes=18)  # 18:12:03 + 5 min, rounded up
    assert window.earliest <= eta <= window.latest

    later = (PAID + timedelta(minutes=30)).isoformat()
    slipped = {**first, "delivery": {**first["delivery"], "partnerEta": later}}
    slipped_window = estimate(slipped, quick, PAID + timedelta(minutes=10))
    assert slipped_window is not None and slipped_window.late


def test_a_riders_estimate_given_once_the_kitchen_is_late_excuses_nothing() -> None:
    """Promised 18:38 at payment; still in the oven at 18:45 (late). A rider assigned then
    with 18:57 must not take the apology back by moving the promise to 19:02."""
    stats = fallback_stats(MINUTES)
    now = PAID + timedelta(minutes=45)
    eta = PAID + timedelta(minutes=57)
    given = {"firstPartnerEta": eta.isoformat(), "firstPartnerEtaAt": now.isoformat()}
    baking = doc("baking", PAID + timedelta(minutes=10), courierStatus="assigned")
    baking["delivery"] |= {"partnerEta": eta.isoformat(), **given}
    window = estimate(baking, stats, now)
    assert window is not None and window.late
    assert window.promised == PAID + timedelta(minutes=38)

    early = {**given, "firstPartnerEtaAt": (PAID + timedelta(minutes=1)).isoformat()}
    baking["delivery"] |= early  # given in time: the promise moves, the oven is still late
    on_time_then = estimate(baking, stats, now)
    assert on_time_then is not None and on_time_then.promised == PAID + timedelta(minutes=62)


def test_the_promise_kept_at_payment_holds_whatever_the_kitchen_does_since() -> None:
    """A view keeps the promise made at payment (``promisedBy``): the statistics of later
    deliveries, much faster here, do not move it, nor turn a waiting order late."""
    instant = stats_from({stage: [1.0] * 8 for stage in STAGES}, fallback_stats(MINUTES))
    kept = PAID + timedelta(minutes=38)
    waiting = {**doc("queued", PAID), "promisedBy": kept.isoformat()}
    window = estimate(waiting, instant, PAID + timedelta(minutes=10))
    assert window is not None and window.promised == kept and not window.late
    recomputed = estimate(doc("queued", PAID), instant, PAID + timedelta(minutes=10))
    assert recomputed is not None and recomputed.late  # what a view without it showed


def test_stages_clicked_through_in_seconds_do_not_make_the_shop_promise_minutes() -> None:
    """A cook marked every stage at once for a while: history says seconds. The estimate
    keeps at least half of each stage's typical time, so a fresh order is neither due
    "now" nor late after two minutes in the queue."""
    clicked = stats_from({stage: [2.0] * 8 for stage in STAGES}, fallback_stats(MINUTES))
    assert clicked["baking"].low == 0.5 * 0.75 * 8 * 60
    assert clicked["baking"].high == 0.5 * 1.25 * 8 * 60
    fresh = estimate(doc("queued", PAID), clicked, PAID)
    assert fresh is not None and fresh.earliest >= PAID + timedelta(minutes=11)
    waiting = estimate(doc("queued", PAID), clicked, PAID + timedelta(minutes=2))
    assert waiting is not None and not waiting.late


def test_a_steady_kitchen_is_not_late_the_moment_it_is_paid() -> None:
    """Quartiles close together (a steady kitchen): the window is still five minutes
    wide, and the promise is that window's end, not the sum of the slow quartiles."""
    steady = stats_from(
        {stage: [60.0 * MINUTES[stage]] * 8 for stage in STAGES}, fallback_stats(MINUTES)
    )
    window = estimate(doc(None), steady, PAID)
    assert window is not None and window.latest - window.earliest >= timedelta(minutes=5)
    assert window.promised == window.latest and not window.late
