"""Issue 12, the second security pass: each test here failed before its fix.

The web app runs inside the test process (``tests.support.webapp``) on the real test
database and Redis; peers get documentation addresses (203.0.113.x), so the client
address rules apply exactly as behind a real network.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from litestar import Litestar
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import service as accounts
from app.accounts.models import Role, User
from app.platform.settings import RateLimitSettings, get_settings
from tests.support import webapp
from tests.support.api import PASSWORD
from tests.support.inproc import place

SESSION = "pizzeria_session"
CSRF = "pizzeria_csrf"


@pytest.fixture
async def app(migrated_db: str, sandbox_url: str) -> AsyncIterator[Litestar]:
    async with webapp.running() as running:
        yield running


async def new_user(
    session_factory: async_sessionmaker[AsyncSession], role: Role = Role.customer
) -> str:
    email = f"{role.value}-{uuid.uuid4().hex[:10]}@example.com"
    async with session_factory() as session:
        await accounts.sign_up(session, email=email, password=PASSWORD, name="Tester", role=role)
    return email


async def token_for(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    response = await client.post("/api/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    """Sign in through the form; return the CSRF token the session is bound to."""
    await client.get("/login")
    response = await client.post(
        "/login",
        data={"email": email, "password": password, "_csrf_token": client.cookies[CSRF]},
    )
    assert response.status_code == 303, response.text
    return client.cookies[CSRF]


# -- secrets --------------------------------------------------------------------------


# -- the role is the account's ------------------------------------------------------------


async def test_a_token_minted_with_role_admin_gets_only_the_accounts_role(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory)
    async with webapp.client(app) as api:
        token = await token_for(api, email)
        claims = jwt.decode(token, options={"verify_signature": False})
        forged = jwt.encode(
            {**claims, "role": "admin"}, get_settings().security.secret_key, algorithm="HS256"
        )
        response = await api.get("/api/deliveries", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 403


async def test_a_demoted_staff_member_loses_staff_rights_at_once(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory, Role.staff)
    async with webapp.client(app) as api, webapp.client(app) as browser:
        headers = {"Authorization": f"Bearer {await token_for(api, email)}"}
        await sign_in(browser, email)
        assert (await api.get("/api/deliveries", headers=headers)).status_code == 200
        assert (await browser.get("/staff/board")).status_code == 200
        async with session_factory() as session:
            await session.execute(
                update(User).where(User.email == email).values(role=Role.customer.value)
            )
            await session.commit()
        assert (await api.get("/api/deliveries", headers=headers)).status_code == 403
        assert (await browser.get("/staff/board")).status_code == 403


async def test_the_audit_trail_records_the_accounts_role_not_the_tokens(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory, Role.staff)
    async with webapp.client(app) as api:
        token = await token_for(api, email)
        claims = jwt.decode(token, options={"verify_signature": False})
        forged = jwt.encode(
            {**claims, "role": "admin"}, get_settings().security.secret_key, algorithm="HS256"
        )
        response = await api.put(
            "/api/admin/partners/payment",
            json={"latencyMs": 0, "errorRate": 0, "down": False},
            headers={"Authorization": f"Bearer {forged}"},
        )
    assert response.status_code == 200, response.text
    async with session_factory() as session:
        role = await session.scalar(
            text(
                "SELECT a.actor_role FROM audit.entries a JOIN accounts.users u"
                " ON u.id = a.actor_id WHERE u.email = :email ORDER BY a.id DESC LIMIT 1"
            ),
            {"email": email},
        )
    assert role == "staff"


# -- password change and sign out everywhere ---------------------------------------------


async def test_a_password_change_ends_every_other_session_and_token(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory)
    async with (
        webapp.client(app) as here,
        webapp.client(app) as elsewhere,
        webapp.client(app) as api,
    ):
        csrf = await sign_in(here, email)
        await sign_in(elsewhere, email)
        headers = {"Authorization": f"Bearer {await token_for(api, email)}"}
        changed = await here.post(
            "/account/password",
            data={
                "current_password": PASSWORD,
                "new_password": "a-brand-new-passphrase-42",
                "_csrf_token": csrf,
            },
        )
        # lands on the account page by a redirect: a reload there sends no form again
        assert changed.status_code == 303, changed.text
        assert changed.headers["location"] == "/account"
        told = await here.get(changed.headers["location"])
        assert "Your password was changed." in told.text
        assert "Your password was changed." not in (await here.get("/account")).text
        assert (await here.get("/orders")).status_code == 200, "this session carries on"
        gone = await elsewhere.get("/orders")
        assert gone.status_code == 303
        assert gone.headers["location"] == "/login?next=/orders&ended=1"
        told = await elsewhere.get(gone.headers["location"])
        assert 'id="sign-in-ended"' in told.text and "password was changed" in told.text
        assert (await api.get("/api/orders", headers=headers)).status_code == 401
    async with webapp.client(app) as stranger:  # never signed in: asked, nothing ended
        asked = await stranger.get("/orders")
        assert asked.headers["location"] == "/login?next=/orders"
        assert 'id="sign-in-ended"' not in (await stranger.get(asked.headers["location"])).text


async def test_sign_out_everywhere_ends_every_session_and_token(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory)
    async with (
        webapp.client(app) as here,
        webapp.client(app) as elsewhere,
        webapp.client(app) as api,
    ):
        csrf = await sign_in(here, email)
        await sign_in(elsewhere, email)
        headers = {"Authorization": f"Bearer {await token_for(api, email)}"}
        account = await here.get("/account")
        assert 'action="/account/sign-out-everywhere"' in account.text
        out = await here.post("/account/sign-out-everywhere", data={"_csrf_token": csrf})
        assert out.status_code == 303
        for browser in (here, elsewhere):
            assert (await browser.get("/orders")).status_code == 303
        assert (await api.get("/api/orders", headers=headers)).status_code == 401
        await sign_in(here, email)
        assert (await here.get("/orders")).status_code == 200, "signing in again works"


# -- sign-in limits: no lockout of the owner ----------------------------------------------


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def _wrong(client: httpx.AsyncClient, email: str, address: str) -> int:
    response = await client.post(
        "/api/auth/token",
        data={"username": email, "password": "not-the-password-1"},
        headers=_from(address),
    )
    return response.status_code


async def _in_one_window(seconds: int) -> None:
    """The limits count in fixed windows that restart at each multiple of ``seconds``:
    wait for the next one when the test might not fit in what is left of this one."""
    left = seconds - time.time() % seconds
    if left < 30:
        await asyncio.sleep(left + 0.1)


async def test_an_attacker_cannot_lock_the_owner_out(
    migrated_db: str, sandbox_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """Behind a trusted proxy: one client hammering an account is refused, the owner on
    another client signs in while it goes on."""
    email = await new_user(session_factory)
    settings = webapp.settings_with(forwarded_allow_ips=("203.0.113.0/24",))
    async with webapp.running(settings) as app, webapp.client(app) as client:
        attacker, owner = "198.51.100.66", "198.51.100.77"
        await _in_one_window(settings.rate_limits.window_seconds)
        codes = [await _wrong(client, email, attacker) for _ in range(12)]
        assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
        response = await client.post(
            "/api/auth/token",
            data={"username": email, "password": PASSWORD},
            headers=_from(owner),
        )
        assert response.status_code == 200, response.text
        assert await _wrong(client, email, attacker) == 429, "the attack is still refused"


async def test_a_distributed_attack_slows_down_but_never_locks_the_account(
    migrated_db: str, sandbox_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory)
    limits = RateLimitSettings(
        signin_backoff_after=3, signin_backoff_step=0.25, signin_backoff_ceiling=1.0
    )
    settings = webapp.settings_with(forwarded_allow_ips=("*",), rate_limits=limits)
    async with webapp.running(settings) as app, webapp.client(app) as client:
        for i in range(10):  # ten clients, each well under its own limit
            assert await _wrong(client, email, f"198.51.100.{i + 1}") == 401
        started = time.monotonic()
        response = await client.post(
            "/api/auth/token",
            data={"username": email, "password": PASSWORD},
            headers=_from("192.0.2.200"),
        )
        waited = time.monotonic() - started
    assert response.status_code == 200, "the owner still gets in"
    assert waited >= limits.signin_backoff_ceiling * 0.9, "attempts on the account are slowed"


async def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """Default settings (no trusted proxy): a client cannot pick its own rate-limit key."""
    assert get_settings().security.forwarded_allow_ips == ()
    email = await new_user(session_factory)
    async with webapp.client(app, peer="203.0.113.99") as client:
        codes = [await _wrong(client, email, f"198.51.100.{i + 1}") for i in range(11)]
    assert codes[-1] == 429, "eleven tries from one peer, whatever the header says"


# -- webhooks -----------------------------------------------------------------------------


async def _delivery_with_pickup(session_factory: async_sessionmaker[AsyncSession]) -> str:
    """A ready delivery whose rider was requested at the partner (pickup ``pk_<id>``), of
    a placed order (whose view the webhook's events are folded into)."""
    delivery_id, customer = uuid.uuid4(), uuid.uuid4()
    order_id = await place(session_factory, customer_id=customer)
    async with session_factory() as session:
        await session.execute(
            text(
                "INSERT INTO delivery.deliveries (id, order_id, customer_id, status,"
                " courier_status, partner_ref, address, items, version, created_at,"
                " updated_at) VALUES (:id, :order, :customer, 'ready', 'requested', :ref,"
                " 'Via Roma 1', '[]', 1, now(), now())"
            ),
            {
                "id": delivery_id,
                "order": order_id,
                "customer": customer,
                "ref": f"pk_{delivery_id.hex}",
            },
        )
        await session.commit()
    return str(delivery_id)


def _event(pickup: str, reference: str) -> bytes:
    return json.dumps(
        {
            "eventId": f"ev_{uuid.uuid4().hex}",
            "type": "picked_up",
            "pickupId": pickup,
            "reference": reference,
            "rider": None,
            "occurredAt": "2026-01-01T00:00:00+00:00",
        }
    ).encode()


async def _status(session_factory: async_sessionmaker[AsyncSession], delivery_id: str) -> str:
    async with session_factory() as session:
        found = await session.scalar(
            text("SELECT status FROM delivery.deliveries WHERE id = :id"), {"id": delivery_id}
        )
    return str(found)


async def test_a_webhook_whose_reference_is_another_delivery_is_refused(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    from app.platform.signing import sign

    secret = get_settings().partners.courier_webhook_secret
    target = await _delivery_with_pickup(session_factory)
    other = await _delivery_with_pickup(session_factory)
    body = _event(f"pk_{uuid.UUID(target).hex}", reference=other)
    async with webapp.client(app) as partner:
        refused = await partner.post(
            "/webhooks/courier", content=body, headers={"X-Courier-Signature": sign(secret, body)}
        )
        assert refused.status_code == 422 and "reference" in refused.text
        assert await _status(session_factory, target) == "ready"
        body = _event(f"pk_{uuid.UUID(target).hex}", reference=target)
        good = await partner.post(
            "/webhooks/courier", content=body, headers={"X-Courier-Signature": sign(secret, body)}
        )
    assert good.status_code == 200
    assert await _status(session_factory, target) == "out_for_delivery"


async def test_webhooks_signed_with_the_previous_secret_count_during_a_rotation(
    migrated_db: str, sandbox_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    import dataclasses

    from app.platform.signing import sign

    base = get_settings()
    old, new = "old-courier-secret-0123456789abcdef0123", "new-courier-secret-0123456789abcdef0123"
    partners = dataclasses.replace(
        base.partners, courier_webhook_secret=new, courier_webhook_secret_previous=old
    )
    delivery_id = await _delivery_with_pickup(session_factory)
    body = _event(f"pk_{uuid.UUID(delivery_id).hex}", reference=delivery_id)
    async with (
        webapp.running(dataclasses.replace(base, partners=partners)) as app,
        webapp.client(app) as partner,
    ):
        for secret, expected in (("someone-elses-secret", 401), (old, 200), (new, 200)):
            response = await partner.post(
                "/webhooks/courier",
                content=body,
                headers={"X-Courier-Signature": sign(secret, body)},
            )
            assert response.status_code == expected, (secret, response.text)


# -- card numbers -------------------------------------------------------------------------


async def test_the_shop_keeps_a_token_brand_and_last_four_never_the_number(
    session_factory: async_sessionmaker[AsyncSession], sandbox_url: str
) -> None:
    from tests.support.inproc import place

    order_id = await place(session_factory, card="4242 4242 4242 4242")
    async with session_factory() as session:
        columns = set(
            await session.scalars(
                text(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = 'payment' AND table_name = 'payments'"
                )
            )
        )
        row = (
            await session.execute(
                text(
                    "SELECT payment_method, card_brand, card_last4 FROM payment.payments"
                    " WHERE order_id = :id"
                ),
                {"id": order_id},
            )
        ).one()
        dump = await session.scalar(
            text("SELECT row_to_json(p)::text FROM payment.payments p WHERE order_id = :id"),
            {"id": order_id},
        )
    assert "card_number" not in columns
    assert row.payment_method.startswith("pm_") and (row.card_brand, row.card_last4) == (
        "visa",
        "4242",
    )
    assert "4242424242424242" not in str(dump)


async def test_a_checkout_shown_again_never_echoes_the_card_number(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory)
    async with webapp.client(app) as browser:
        csrf = await sign_in(browser, email)
        await browser.post("/basket/add", data={"pizza_id": "1", "_csrf_token": csrf})
        response = await browser.post(
            "/checkout/",
            data={
                "address": "",  # missing: the form comes back
                "card_number": "5555 5555 5555 4444",
                "idempotency_key": uuid.uuid4().hex,
                "_csrf_token": csrf,
            },
        )
    assert response.status_code == 422
    assert "5555 5555 5555 4444" not in response.text
    assert "5555555555554444" not in response.text


# -- sessions -------------------------------------------------------------------------------


async def test_requests_that_store_nothing_create_no_session(app: Litestar, redis: Any) -> None:
    before = len([key async for key in redis.scan_iter("pizzeria:session*")])
    async with webapp.client(app) as visitor:
        for path in (
            "/health/live",
            "/health/ready",
            "/static/css/app.css",
            "/schema/openapi.json",
            "/",
        ):
            response = await visitor.get(path)
            assert response.status_code == 200, path
            assert "pizzeria_session" not in response.headers.get("set-cookie", ""), path
    after = len([key async for key in redis.scan_iter("pizzeria:session*")])
    assert after == before


async def test_the_sign_out_cookie_expires_at_once(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory)
    async with webapp.client(app) as browser:
        csrf = await sign_in(browser, email)
        response = await browser.post("/logout", data={"_csrf_token": csrf})
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION}="))
    assert "Max-Age=0" in cookie, cookie


@pytest.mark.parametrize(
    "target", ["/\\evil.example", "//evil.example", "https://evil.example", "/\t/evil.example"]
)
async def test_next_after_sign_in_stays_on_this_site(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession], target: str
) -> None:
    email = await new_user(session_factory)
    async with webapp.client(app) as browser:
        await browser.get("/login")
        form = {"email": email, "password": PASSWORD, "next": target}
        plain = await browser.post("/login", data={**form, "_csrf_token": browser.cookies[CSRF]})
        assert plain.headers["location"] == "/"
        htmx = await browser.post(
            "/login",
            data={**form, "_csrf_token": browser.cookies[CSRF]},
            headers={"HX-Request": "true"},
        )
        assert htmx.headers["hx-redirect"] == "/"


# -- CSRF ---------------------------------------------------------------------------------


async def test_csrf_tokens_are_bound_to_the_session(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory)
    async with webapp.client(app) as mine, webapp.client(app) as theirs:
        my_token = await sign_in(mine, email)
        their_token = await sign_in(theirs, await new_user(session_factory))
        # Another session's token, planted in both the cookie and the form: refused.
        mine.cookies.set(CSRF, their_token, domain="shop.test")
        planted = await mine.post("/basket/add", data={"pizza_id": "1", "_csrf_token": their_token})
        assert planted.status_code == 403
        mine.cookies.set(CSRF, my_token, domain="shop.test")
        good = await mine.post("/basket/add", data={"pizza_id": "1", "_csrf_token": my_token})
        assert good.status_code == 303


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_state_changes_from_another_origin_are_refused(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession], headers: dict[str, str]
) -> None:
    email = await new_user(session_factory)
    async with webapp.client(app) as browser:
        csrf = await sign_in(browser, email)
        refused = await browser.post(
            "/basket/add", data={"pizza_id": "1", "_csrf_token": csrf}, headers=headers
        )
        assert refused.status_code == 403
        same = {"Origin": "http://shop.test", "Sec-Fetch-Site": "same-origin"}
        allowed = await browser.post(
            "/basket/add", data={"pizza_id": "1", "_csrf_token": csrf}, headers=same
        )
        assert allowed.status_code == 303


# -- caching --------------------------------------------------------------------------------


async def test_private_answers_are_never_stored(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    customer, staff = await new_user(session_factory), await new_user(session_factory, Role.staff)
    async with webapp.client(app) as browser, webapp.client(app) as api, webapp.client(app) as boss:
        anonymous = await browser.get("/")
        assert "no-store" not in anonymous.headers.get("cache-control", "")
        await sign_in(browser, customer)
        await sign_in(boss, staff)
        headers = {"Authorization": f"Bearer {await token_for(api, customer)}"}
        answers = [
            await browser.get("/"),
            await browser.get("/orders"),
            await browser.get("/account"),
            await api.get("/api/orders", headers=headers),
            await api.get("/api/coupons", headers=headers),
            await boss.get("/staff/refunds/export.csv"),
        ]
    for response in answers:
        assert response.status_code == 200, response.url
        assert response.headers.get("cache-control") == "no-store", response.url


# -- the API: idempotency, strict types, absurd input ---------------------------------------


def _order(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "items": [{"pizzaId": 1, "qty": 1}],
        "address": "Via Roma 1, Napoli",
        "cardNumber": "4242424242424242",
    }
    return {**body, **overrides}


async def test_reusing_an_idempotency_key_for_another_order_is_a_422(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory)
    async with webapp.client(app) as api:
        headers = {
            "Authorization": f"Bearer {await token_for(api, email)}",
            "Idempotency-Key": uuid.uuid4().hex,
        }
        first = await api.post("/api/orders", json=_order(), headers=headers)
        assert first.status_code == 201, first.text
        again = await api.post("/api/orders", json=_order(), headers=headers)
        assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
        other = await api.post(
            "/api/orders", json=_order(items=[{"pizzaId": 2, "qty": 3}]), headers=headers
        )
        too_long = await api.post(
            "/api/orders", json=_order(), headers={**headers, "Idempotency-Key": "k" * 101}
        )
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    # refused by Litestar itself, before the handler: named as sent too
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "Idempotency-Key", too_long.text
    assert too_long.json()["detail"].startswith("Idempotency-Key: ")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_order(items=[{"pizzaId": 1, "qty": "1"}]), "items[0].qty"),
        (_order(items=[{"pizzaId": "1", "qty": 1}]), "items[0].pizzaId"),
        (_order(address=12), "address"),
        (_order(items=[{"pizzaId": 1, "qty": 1.0}]), "items[0].qty"),
    ],
)
async def test_the_api_takes_exact_types_only(
    app: Litestar,
    session_factory: async_sessionmaker[AsyncSession],
    body: dict[str, Any],
    field: str,
) -> None:
    email = await new_user(session_factory)
    async with webapp.client(app) as api:
        headers = {"Authorization": f"Bearer {await token_for(api, email)}"}
        response = await api.post("/api/orders", json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


async def test_deeply_nested_or_oversized_bodies_get_a_clean_4xx(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory)
    deep = b'{"items": ' + b"[" * 1000 + b"]" * 1000 + b', "address": "x", "cardNumber": "1"}'
    async with webapp.client(app) as api:
        headers = {"Authorization": f"Bearer {await token_for(api, email)}"}
        nested = await api.post(
            "/api/orders", content=deep, headers={**headers, "content-type": "application/json"}
        )
        assert nested.status_code == 422, nested.text
        hook = await api.post(
            "/webhooks/courier",
            content=b"[" * 1000 + b"]" * 1000,
            headers={"content-type": "application/json"},
        )
        assert hook.status_code in (401, 422), hook.text
        huge = await api.post(
            "/api/auth/token",
            data={"username": email, "password": "x" * 20_000},
        )
        assert huge.status_code == 413


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "2026-02-30", "99999-01-01"])
async def test_absurd_dates_in_the_refund_lookup_are_not_a_500(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession], day: str
) -> None:
    staff = await new_user(session_factory, Role.staff)
    async with webapp.client(app) as boss:
        await sign_in(boss, staff)
        for params in ({"from": day}, {"to": day}, {"from": day, "to": day}):
            page = await boss.get("/staff/refunds", params=params)
            assert page.status_code in (200, 422), (params, page.status_code)
            csv = await boss.get("/staff/refunds/export.csv", params=params)
            assert csv.status_code in (200, 422), (params, csv.status_code)


@pytest.mark.parametrize(
    "moment", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "9999-12-31"]
)
async def test_absurd_instants_in_the_refund_api_are_not_a_500(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession], moment: str
) -> None:
    staff = await new_user(session_factory, Role.staff)
    async with webapp.client(app) as api:
        headers = {"Authorization": f"Bearer {await token_for(api, staff)}"}
        for params in ({"from": moment}, {"to": moment}):
            response = await api.get("/api/refunds", params=params, headers=headers)
            assert response.status_code in (200, 422), (params, response.text)


# -- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "overrides", "named"),
    [
        (["relay"], {"SECRET_KEY": ""}, "SECRET_KEY is not set"),
        (
            ["worker", "coupon"],
            {"SECRET_KEY": "dev-only-secret-change-me-in-production-0123"},
            "SECRET_KEY is a published default",
        ),
        (["serve", "--port", "9"], {"SECRET_KEY": "short-secret"}, "SECRET_KEY is shorter"),
        (
            ["relay"],
            {"COURIER_WEBHOOK_SECRET": "dev-only-courier-webhook-secret"},
            "COURIER_WEBHOOK_SECRET is a published default",
        ),
    ],
)
def test_no_part_starts_with_a_missing_default_or_short_secret(
    part: list[str], overrides: dict[str, str], named: str
) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, **overrides}
    env.pop("PIZZERIA_DEMO", None)
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *part], env=env, capture_output=True, timeout=90
    )
    assert done.returncode != 0
    assert named in done.stderr.decode(), done.stderr.decode()[-500:]
