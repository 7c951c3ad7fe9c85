"""Dead letters in the running shop: the real status worker parks a poison job, health
counts it, admins (only) see it on their page and send it again."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from arq.connections import ArqRedis, RedisSettings

from app.platform.redis import dumps_job, loads_job
from tests.support.api import browser_session, create_user
from tests.support.pipeline import eventually
from tests.support.processes import Shop

pytestmark = pytest.mark.timeout(300)


async def _dead_letters(client: httpx.AsyncClient) -> int:
    return int((await client.get("/health")).json()["events"]["deadLetters"])


async def test_admins_see_a_poison_job_and_retry_it(client: httpx.AsyncClient, shop: Shop) -> None:
    before = await _dead_letters(client)
    poison = {"id": str(uuid.uuid4()), "type": "OrderPlaced"}  # no envelope: not an event
    jobs = ArqRedis(
        connection_pool=None,
        **_connection(shop.env["REDIS_URL"]),
        job_serializer=dumps_job,
        job_deserializer=loads_job,
    )
    try:
        await jobs.enqueue_job(
            "status.project", poison, _job_id=f"{poison['id']}:status.project", _queue_name="status"
        )
    finally:
        await jobs.aclose()

    await eventually(lambda: _more(client, before), "health counting the dead letter", 30)

    admin = await create_user(shop.env, "admin")
    staff = await create_user(shop.env, "staff")
    async with httpx.AsyncClient(base_url=shop.url, timeout=20) as browser:
        await browser_session(browser, staff)
        assert (await browser.get("/admin/events")).status_code == 403
    async with httpx.AsyncClient(base_url=shop.url, timeout=20) as browser:
        csrf = await browser_session(browser, admin)
        listing = await browser.get("/admin/events")
        assert listing.status_code == 200
        row = re.search(
            rf'data-letter="(\d+)" data-handler="status.project">(?:(?!</tr>).)*{poison["id"]}',
            listing.text,
            re.S,
        )
        assert row, "the parked job is listed with its event"
        assert "BadPayload" in row.group(0)
        letter_id = row.group(1)

        retried = await browser.post(
            f"/admin/events/dead/{letter_id}/retry", data={"_csrf_token": csrf}
        )
        assert retried.status_code == 303
        assert retried.headers["location"] == f"/admin/events?retried={letter_id}"

        async def failed_twice() -> bool:
            page = (await browser.get("/admin/events")).text
            return "(2 failures)" in page and f'data-letter="{letter_id}"' in page

        # still a bad payload: parked again, the same row, now with two failures
        await eventually(failed_twice, "the retried poison job parked again", 30)
        assert "retried" in (await browser.get("/admin/events")).text

        # nobody will send it right: discarded, saying why (too long first, kept as typed)
        discard = f"/admin/events/dead/{letter_id}/discard"
        rambling = "The status view was rebuilt by hand. " * 16
        refused = await browser.post(discard, data={"_csrf_token": csrf, "reason": rambling})
        assert refused.status_code == 422
        field = re.search(
            rf'<input id="reason-{letter_id}"[^>]*>\s*<p class="error"[^<]*', refused.text
        )
        assert field, "the message is next to this letter's reason field"
        assert "Please keep it under 500 characters." in field.group(0)
        assert f'value="{rambling}"' in field.group(0), "what was typed is kept"
        reason = "A poison job from a test: nothing to project"
        given_up = await browser.post(discard, data={"_csrf_token": csrf, "reason": reason})
        assert given_up.status_code == 303
        assert given_up.headers["location"] == f"/admin/events?discarded={letter_id}"
        listing = (await browser.get(given_up.headers["location"])).text
        assert f"Dead letter {letter_id} discarded." in listing
        assert f'data-letter="{letter_id}"' not in listing, "no longer waiting for anyone"
        assert reason in listing, "the reconciler log says why"
    await eventually(lambda: _back_to(client, before), "health no longer counting it", 10)

    async with httpx.AsyncClient(base_url=shop.url, timeout=20) as browser:
        csrf = await browser_session(browser, staff)
        forbidden = await browser.post(discard, data={"_csrf_token": csrf, "reason": reason})
        assert forbidden.status_code == 403


async def _more(client: httpx.AsyncClient, than: int) -> bool:
    return await _dead_letters(client) > than


async def _back_to(client: httpx.AsyncClient, count: int) -> bool:
    return await _dead_letters(client) <= count


def _connection(url: str) -> dict[str, object]:
    settings = RedisSettings.from_dsn(url)
    return {"host": settings.host, "port": settings.port, "db": settings.database}
