"""Basket and checkout pages."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, URLEncodedBody
from sqlalchemy.ext.asyncio import AsyncSession

from app.menu import service as menu
from app.ordering import service
from app.ordering.basket import (
    BasketLine,
    add_to_basket,
    basket_lines,
    basket_seen,
    read_basket,
    write_basket,
)
from app.ordering.models import MAX_QTY
from app.payment.service import CardVault
from app.platform import limits
from app.platform.access import access, session_principal
from app.platform.errors import Conflict, DomainError, InvalidInput, Unavailable
from app.platform.forms import form_again
from app.platform.i18n import N_
from app.platform.partners import PartnerBreakers, refusal_message
from app.platform.ratelimit import TooManyRequests
from app.platform.security import Principal
from app.platform.sessions import answer_stands
from app.platform.settings import Settings
from app.platform.text import storable
from app.platform.web import (
    database_errors_as_unavailable,
    is_htmx,
    keep_typed,
    notice_for,
    page,
    redirect,
    take_notice,
)

CHECKOUT_FORM = "checkout_form"
RETRYING = "retrying_order"
#: the order this browser's last checkout placed: the next checkout page, when its basket
#: is empty, links to it once (a reload while paying lands there, with the order placed
#: and nothing said of it)
LAST_PLACED = "last_placed_order"


def _int(value: Any, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


class MenuPages(Controller):
    """The menu page: pizzas on the left, the basket on the right. Ordering's page (it
    reads the menu through menu's service), so menu knows nothing of baskets."""

    opt = access("public")

    @get("/")
    async def menu(self, request: Request[Any, Any, Any], db: NamedDependency[AsyncSession]) -> Any:
        pizzas = await menu.list_menu(db)
        return page(
            request,
            "ordering/menu.html",
            pizzas=pizzas,
            basket=await basket_lines(request, db),
            notice=take_notice(request, "/"),
        )


class BasketPages(Controller):
    opt = access("public")
    path = "/basket"

    @post("/add")
    async def add(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
        db: NamedDependency[AsyncSession],
    ) -> Any:
        pizza_id = _int(data.get("pizza_id"), 0)
        refused = None
        if pizza_id > 0:
            qty = max(1, min(MAX_QTY, _int(data.get("qty"), 1)))
            refused = add_to_basket(request, pizza_id, qty)
        return await _basket_response(request, db, refused)

    @post("/less")
    async def less(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
        db: NamedDependency[AsyncSession],
    ) -> Any:
        """One pizza of this line less (the minus button next to it); at zero the line goes."""
        pizza_id = _int(data.get("pizza_id"), 0)
        if pizza_id > 0 and str(pizza_id) in read_basket(request):
            add_to_basket(request, pizza_id, -1)
        return await _basket_response(request, db)

    @post("/remove")
    async def remove(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
        db: NamedDependency[AsyncSession],
    ) -> Any:
        basket = read_basket(request)
        basket.pop(str(_int(data.get("pizza_id"), 0)), None)
        write_basket(request, basket)
        return await _basket_response(request, db)


async def _basket_response(
    request: Request[Any, Any, Any], db: NamedDependency[AsyncSession], refused: str | None = None
) -> Any:
    if is_htmx(request):
        lines = await basket_lines(request, db)
        # beside the checkout form, its amount, pay button and fingerprint follow the
        # basket, or the first Pay would be refused as a basket changed "elsewhere"
        on_checkout = _on_checkout(request)
        seen = basket_seen(lines) if on_checkout else None
        signed_in = session_principal(request)
        discount = 0
        if on_checkout and signed_in is not None:
            discount, _ = await _coupon_preview(
                db, signed_in.user_id, _remembered_coupon(request), lines
            )
        return page(
            request,
            "ordering/_basket.html",
            basket=lines,
            oob_count=True,
            checkout_seen=seen,
            checkout_discount=discount,
            refused=refused,
        )
    if refused:  # without JavaScript: said on the menu page the form goes back to
        notice_for(request, "/", refused)
    return redirect(request, "/")


async def _coupon_preview(
    db: AsyncSession,
    customer_id: uuid.UUID,
    code: str,
    lines: list[BasketLine],
) -> tuple[int, str | None]:
    """What a coupon typed at the checkout takes off this basket, or why it takes nothing
    (placing the order checks it again, under a lock)."""
    subtotal = sum(line.amount for line in lines)
    try:
        async with database_errors_as_unavailable():
            return await service.coupon_discount(db, customer_id, code, subtotal), None
    except InvalidInput as refused:
        return 0, refused.by_field().get("coupon_code")


def _remembered_coupon(request: Request[Any, Any, Any]) -> str:
    form = request.session.get(CHECKOUT_FORM)
    return str(form.get("coupon_code", "")) if isinstance(form, dict) else ""


def _on_checkout(request: Request[Any, Any, Any]) -> bool:
    """Whether the page that sent this htmx request is the checkout (htmx names it)."""
    return urlsplit(request.headers.get("hx-current-url", "")).path.rstrip("/") == "/checkout"


class CheckoutPages(Controller):
    opt = access("customer")
    path = "/checkout"

    @get("/")
    async def checkout_form(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[AsyncSession],
        customer: NamedDependency[Principal],
    ) -> Any:
        lines = await basket_lines(request, db)
        form = request.session.get(CHECKOUT_FORM) or {}
        retrying = request.session.pop(RETRYING, None)
        retrying = retrying if isinstance(retrying, dict) else None
        discount, refused = await _coupon_preview(
            db, customer.user_id, _remembered_coupon(request), lines
        )
        return page(
            request,
            "ordering/checkout.html",
            basket=lines,
            form=form,
            errors={"coupon_code": refused} if refused else {},
            discount=discount,
            retrying=retrying,
            checkout_token=(
                service.retry_key(uuid.UUID(retrying["order"])) if retrying else uuid.uuid4().hex
            ),
            seen=basket_seen(lines),
            last_placed=None if lines else request.session.pop(LAST_PLACED, None),
        )

    @post("/", opt=keep_typed(lambda request, form: remember_details(request, form)))
    async def place_order(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
        db: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        customer: NamedDependency[Principal],
        breakers: NamedDependency[PartnerBreakers],
        card_vault: NamedDependency[CardVault],
    ) -> Any:
        form = {
            "address": str(data.get("address", "")),
            "phone": str(data.get("phone", ""))[:40],
            "note": str(data.get("note", ""))[:300],
            "card_number": str(data.get("card_number", "")),
            "coupon_code": str(data.get("coupon_code", ""))[:40],
        }
        token = str(data.get("idempotency_key", ""))[:100] or None
        lines = await basket_lines(request, db)
        if token and storable(token):
            # A second submit of a form whose first submit placed the order: show that
            # order, not "Add at least one pizza." (the first emptied the basket) nor a
            # charge for what was put in the basket since (that stays in the basket).
            placed_before = await service.order_for_key(db, customer.user_id, token)
            if placed_before is not None:
                return _placed_before(request, placed_before, token, bool(lines))
        # The details the customer typed survive a refusal and a failed payment (never the
        # card number): the next checkout starts from them.
        remember_details(request, form)
        seen = str(data.get("basket_seen", ""))
        if lines and seen and seen != basket_seen(lines):
            return await _checkout_again(
                request,
                db,
                customer,
                form,
                InvalidInput.single("items", BASKET_CHANGED),
                lines,
                token,
                status_code=409,
            )
        command = service.PlaceOrder(
            customer_id=customer.user_id,
            lines=[service.LineRequest(line.pizza_id, line.qty) for line in lines],
            address=form["address"],
            card_number=form["card_number"],
            idempotency_key=token,
            coupon_code=form["coupon_code"].strip() or None,
            phone=form["phone"],
            note=form["note"],
            customer_name=customer.name,
        )
        try:
            async with database_errors_as_unavailable():  # the form stays, basket and all
                await limits.place_order(request, str(customer.user_id))
                placed = await service.place_order(
                    db, settings, command, gate=breakers, vault=card_vault
                )
        except (InvalidInput, Unavailable, TooManyRequests) as exc:
            return await _checkout_again(request, db, customer, form, exc, lines, token)
        answer_stands(request)  # the order exists: a lost basket write must not hide it
        write_basket(request, {})
        remember_details(request, {**form, "coupon_code": ""})  # used: not for the next one
        request.session[LAST_PLACED] = str(placed.order_id)
        return redirect(request, f"/orders/{placed.order_id}")

    @post("/coupon")
    async def preview_coupon(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
        db: NamedDependency[AsyncSession],
        customer: NamedDependency[Principal],
    ) -> Any:
        """The coupon field, checked as it is left: the amount and the Pay button then say
        what Pay will charge. The code is remembered with the other details, so the
        basket's changes and a reload keep the discount."""
        code = str(data.get("coupon_code", ""))[:40]
        remembered = request.session.get(CHECKOUT_FORM)
        remember_details(request, {**(remembered or {}), "coupon_code": code})
        if not is_htmx(request):  # the field only sends this with JavaScript
            return redirect(request, "/checkout")
        lines = await basket_lines(request, db)
        discount, refused = await _coupon_preview(db, customer.user_id, code, lines)
        return page(
            request,
            "ordering/_coupon.html",
            basket=lines,
            coupon_code=code,
            discount=discount,
            error=refused,
        )

    @post("/again/{order_id:uuid}")
    async def try_another_card(
        self,
        request: Request[Any, Any, Any],
        order_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        customer: NamedDependency[Principal],
    ) -> Any:
        """ "Try another card" on an order whose payment failed: its pizzas go back into
        the basket and its details into the form, and the customer only types a card."""
        again = await service.checkout_again(db, order_id, customer.user_id)
        if again.ordered_again_as is not None:
            placed = f"/orders/{again.ordered_again_as}"
            notice_for(request, placed, ORDERED_AGAIN)
            return redirect(request, placed)
        lines = {str(line.pizza_id): line.qty for line in again.lines}
        before = read_basket(request)
        write_basket(request, lines)
        remember_details(
            request,
            {
                "address": again.address,
                "phone": again.phone,
                "note": again.note,
                "coupon_code": again.coupon_code,
            },
        )
        request.session[RETRYING] = {
            "order": str(order_id),
            "replaced": bool(before) and before != lines,
        }
        return redirect(request, "/checkout")


#: "Try another card" on a failed order whose pizzas were already ordered again
ORDERED_AGAIN = N_(
    "You already ordered these pizzas again after that payment failed: this is that order."
)

#: a checkout page sent again, with pizzas in the basket, after it had placed its order
ALREADY_PLACED = N_(
    "That checkout page had already placed this order, so nothing was charged again. "
    "Pizzas added since are still in your basket."
)


def _placed_before(
    request: Request[Any, Any, Any], order_id: uuid.UUID, token: str, basket_filled: bool
) -> Any:
    """The order a checkout page's key already placed, told why when it is not obvious."""
    path = f"/orders/{order_id}"
    if service.is_retry_key(token):
        notice_for(request, path, ORDERED_AGAIN)
    elif basket_filled:
        notice_for(request, path, ALREADY_PLACED)
    return redirect(request, path)


#: the basket changed between the checkout page and its Pay button
BASKET_CHANGED = N_(
    "Your basket changed since this page was shown (in another tab or window?). Check "
    "the pizzas and the new total, then pay again: nothing was charged."
)


async def _checkout_again(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    customer: Principal,
    form: dict[str, str],
    refusal: DomainError,
    lines: list[BasketLine],
    token: str | None,
    status_code: int | None = None,
) -> Any:
    """The checkout page again with the refusal, what was typed (the card number typed
    again, as in any shop), and the basket as it is now, at the price Pay would charge."""
    return form_again(
        request,
        "ordering/checkout.html",
        form,
        refusal,
        status_code=status_code,
        fields=("items",),  # one message for the basket, above the form
        secret=("card_number",),  # never echoed back: typed again, as in any shop
        busy=refusal_message,
        basket=lines,
        checkout_token=token or uuid.uuid4().hex,
        seen=basket_seen(lines),
        discount=await _discount_after_refusal(db, customer, form["coupon_code"], lines),
    )


async def _discount_after_refusal(
    db: AsyncSession, customer: Principal, code: str, lines: list[BasketLine]
) -> int:
    """The coupon's discount for the page that shows a refusal. The refused placement's
    transaction goes first: it may hold the coupon redeemed, and the preview would read
    "can no longer be used" of the customer's own coupon. With the database away, no
    discount is shown (the page says "before your coupon")."""
    try:
        async with database_errors_as_unavailable():
            await db.rollback()
        discount, _ = await _coupon_preview(db, customer.user_id, code, lines)
    except Unavailable:
        return 0
    return discount


def remember_details(request: Request[Any, Any, Any], form: dict[str, str]) -> None:
    """Keep what the customer typed (never the card number) for their next checkout."""
    request.session[CHECKOUT_FORM] = {
        key: form.get(key, "") for key in ("address", "phone", "note", "coupon_code")
    }


class OrderCancelPages(Controller):
    """The order page's "Cancel order" button: an ordering use case, answered on the
    order page (the read side's) either way."""

    opt = access("customer")
    path = "/orders"

    @post("/{order_id:uuid}/cancel")
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        order_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        customer: NamedDependency[Principal],
        settings: NamedDependency[Settings],
    ) -> Any:
        """Cancel, or say on the order page why not: after a redirect, so a reload does
        not send the form again, and above the live part, which the next update (likely
        the very kitchen move that refused the cancel) re-renders."""
        order_page = f"/orders/{order_id}"
        try:
            await service.cancel_order(db, order_id, customer.user_id)
        except Conflict as exc:
            notice_for(request, order_page, exc.detail, until_changed=True)
        return redirect(request, order_page)
