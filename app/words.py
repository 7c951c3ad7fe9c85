"""The shop's words for its states, shared by pages and messages (one spelling per state).

Every label is an ``N_`` message: English in code and the API, the visitor's language on
a page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.platform.i18n import N_, Money, Msg, Verbatim

STATUS_LABELS: dict[str, str] = {
    # orders
    "placed": N_("Placed"),
    "paid": N_("Paid"),
    "payment_failed": N_("Payment failed"),
    "cancelled": N_("Cancelled"),
    "fulfilled": N_("Delivered"),
    "refunded": N_("Refunded"),
    # payments
    "pending": N_("Pending"),
    "captured": N_("Captured"),
    "failed": N_("Failed"),
    "voided": N_("Voided"),
    "payment_voided": N_("Payment voided"),
    # deliveries
    "queued": N_("Queued"),
    "preparing": N_("Preparing"),
    "baking": N_("In the oven"),
    "ready": N_("Ready"),
    "out_for_delivery": N_("Out for delivery"),
    "delivered": N_("Delivered"),
    "return_requested": N_("Return requested"),
    "returned": N_("Returned"),
    "return_cancelled": N_("Return cancelled"),
    # coupons
    "issued": N_("Issued"),
    "redeemed": N_("Redeemed"),
    "revoked": N_("Revoked"),
    "expired": N_("Expired"),
    # refunds (on the order's timeline, and the refund's own states)
    "refund_requested": N_("Refund requested"),
    "refund_completed": N_("Refunded"),
    "refund_cancelled": N_("Refund cancelled"),
    "requested": N_("Requested"),
    "completed": N_("Completed"),
}


def status_label(status: str | None) -> str:
    """The label of a state; an unknown state shows as spelled."""
    if status is None:
        return ""
    return STATUS_LABELS.get(str(status), str(status))


# -- the order's timeline -------------------------------------------------------------

#: what each step of an order's timeline says when it needs no facts
STEP_WORDS: dict[str, str] = {
    "placed": N_("Order placed"),
    "cancelled": N_("Cancelled at your request"),
    "queued": N_("Waiting for the kitchen"),
    "preparing": N_("The kitchen is preparing your pizzas"),
    "baking": N_("Your pizzas are in the oven"),
    "ready": N_("Ready, waiting for the rider"),
    "out_for_delivery": N_("On its way"),
    "delivered": N_("Delivered. Buon appetito!"),
    "return_requested": N_("A rider will collect the pizzas"),
    "returned": N_("The pizzas are back at the shop"),
    "return_cancelled": N_("Return cancelled; the order stays delivered"),
    "refund_cancelled": N_("Refund cancelled; no money moved"),
    "payment_failed": N_("The payment was declined."),
    "payment_voided": N_("No money was taken."),
}

#: the delivery stages a timeline shows (the kitchen and the ride)
STAGES = ("queued", "preparing", "baking", "ready", "out_for_delivery", "delivered")


def step_words(status: str, args: Mapping[str, Any] | None = None) -> str:
    """One timeline step in words; ``args`` are the facts it mentions (amount, rider,
    reason). English in the stored view and the API, translated on a page."""
    args = args or {}
    if status == "paid" and "amount" in args:
        return N_("Paid %(amount)s", amount=Money(args["amount"], args["currency"]))
    if status == "payment_voided" and "amount" in args:
        return N_(
            "The charge of %(amount)s was voided: no money was taken.",
            amount=Money(args["amount"], args["currency"]),
        )
    if status == "refund_completed" and "amount" in args:
        return N_("Refund of %(amount)s sent", amount=Money(args["amount"], args["currency"]))
    if status == "refund_requested":
        return N_("Refund requested: %(reason)s", reason=args.get("reason") or "")
    if status == "out_for_delivery" and args.get("rider"):
        return N_("On its way with %(rider)s", rider=Verbatim(args["rider"]))
    if status == "payment_failed" and args.get("reason"):
        return Msg(str(args["reason"]))  # the provider's words, through the catalog
    return STEP_WORDS.get(status, "")


# -- partners' circuit breakers ---------------------------------------------------------

BREAKER_WORDS: dict[str, str] = {
    "payment": N_("Payment"),
    "courier": N_("Courier"),
    "closed": N_("closed"),
    "open": N_("open"),
    "half_open": N_("half-open"),
}


def breaker_words(value: str) -> str:
    return BREAKER_WORDS.get(value, value)


ROLE_WORDS: dict[str, str] = {
    "customer": N_("customer"),
    "staff": N_("staff"),
    "admin": N_("admin"),
}


def role_words(role: str) -> str:
    return ROLE_WORDS.get(role, role)


def install(environment: Any) -> None:
    """The shop's words as template globals."""
    environment.globals.update(
        status_words=status_label,
        breaker_words=breaker_words,
        step_words=step_words,
        role_words=role_words,
    )
