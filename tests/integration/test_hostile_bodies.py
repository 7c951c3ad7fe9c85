"""Bodies the fuzzers did not send: what Litestar would read as JSON whatever the
``Content-Type`` says, bytes that are not UTF-8, and a signature header too long for
``int``; and a request for the API's bare prefix. Each must be a 4xx with a JSON body
naming the problem, never a 500 (or an HTML page)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.api import auth, new_customer, order_body

NOT_JSON_TYPES = ["text/plain", "application/x-www-form-urlencoded", ""]


def _problem(response: httpx.Response) -> dict[str, object]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body: dict[str, object] = response.json()
    return body


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/orders", {**order_body(), "extra": "Main"}),  # a field no Struct declares
        ("/api/orders", {**order_body(), "Main": 1}),  # in a key
        ("/api/auth/signup", {"email": "a@example.com", "password": "x" * 12, "x": "Main"}),
    ],
)
async def test_bytes_that_are_not_utf8_are_a_400_wherever_they_are(
    client: httpx.AsyncClient, path: str, body: dict[str, object]
) -> None:
    headers = {**auth(await new_customer(client)), "Content-Type": "application/json"}
    raw = json.dumps(body).encode().replace(b"Main", b"M\xe4in")
    response = await client.post(path, content=raw, headers=headers)
    assert response.status_code == 400, response.text
    assert "UTF-8" in str(_problem(response)["detail"])


async def test_a_body_that_is_not_utf8_is_a_400_naming_it(client: httpx.AsyncClient) -> None:
    headers = auth(await new_customer(client))
    raw = json.dumps(order_body(address="Main")).encode().replace(b"Main", b"M\xe4in")
    for content_type in ["application/json", *NOT_JSON_TYPES]:
        response = await client.post(
            "/api/orders", content=raw, headers={**headers, "Content-Type": content_type}
        )
        assert response.status_code == 400, (content_type, response.text)
        assert "UTF-8" in str(_problem(response)["detail"])
    listed = await client.get("/api/orders", headers=headers)
    assert listed.json() == []  # nothing was placed


@pytest.mark.parametrize("content_type", NOT_JSON_TYPES)
async def test_json_checks_hold_whatever_the_content_type(
    client: httpx.AsyncClient, content_type: str
) -> None:
    headers = {**auth(await new_customer(client)), "Content-Type": content_type}
    deep = b'{"items":' + b"[" * 5000 + b"]" * 5000 + b',"address":"x","cardNumber":"4242"}'
    too_deep = await client.post("/api/orders", content=deep, headers=headers)
    assert too_deep.status_code == 422, too_deep.text
    assert "nest" in str(_problem(too_deep)["detail"])

    loose = order_body(items=[{"pizzaId": "1", "qty": "2"}])
    typed = await client.post("/api/orders", content=json.dumps(loose), headers=headers)
    assert typed.status_code == 422, typed.text
    fields = [e["field"] for e in _problem(typed)["errors"]]  # type: ignore[union-attr]
    assert fields == ["items[0].pizzaId"]


async def test_a_missing_body_is_named_as_such(client: httpx.AsyncClient) -> None:
    headers = {**auth(await new_customer(client)), "Content-Type": "application/json"}
    response = await client.post("/api/orders", content=b"", headers=headers)
    assert response.status_code == 422, response.text
    assert _problem(response)["errors"] == [
        {"field": "body", "message": "A JSON body is required."}
    ]


async def test_a_webhook_signature_with_a_huge_timestamp_is_refused(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/webhooks/courier",
        content=b'{"eventId":"x","type":"delivered"}',
        headers={
            "Content-Type": "application/json",
            "X-Courier-Signature": f"t={'9' * 4301},v1=00",
        },
    )
    assert response.status_code == 401, response.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"latencyMs": True}, "latencyMs"),
        ({"latencyMs": "5_000"}, "latencyMs"),
        ({"down": "maybe"}, "down"),
        ({"errorRate": {}}, "errorRate"),
        ({"latncyMs": 5}, "latncyMs"),  # a misspelt knob is refused, not ignored
        ({"answerDelayMs": -1}, "answerDelayMs"),
    ],
)
async def test_partner_knobs_are_typed(
    client: httpx.AsyncClient, staff: dict[str, str], body: dict[str, object], field: str
) -> None:
    before = (await client.get("/api/admin/partners", headers=staff)).json()
    response = await client.put("/api/admin/partners/courier", json=body, headers=staff)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in _problem(response)["errors"]] == [field]  # type: ignore[union-attr]
    assert (await client.get("/api/admin/partners", headers=staff)).json() == before


async def test_partner_knobs_read_can_be_written_back(
    client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    before = (await client.get("/api/admin/partners", headers=staff)).json()
    response = await client.put(
        "/api/admin/partners/courier", json=before["courier"], headers=staff
    )
    assert response.status_code == 200, response.text
    assert (await client.get("/api/admin/partners", headers=staff)).json() == before


async def test_partner_knobs_left_out_or_null_change_nothing(
    client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    before = (await client.get("/api/admin/partners", headers=staff)).json()
    response = await client.put("/api/admin/partners/courier", json={"down": None}, headers=staff)
    assert response.status_code == 200, response.text
    assert (await client.get("/api/admin/partners", headers=staff)).json() == before


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
async def test_the_bare_api_prefix_answers_json(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/api")
    assert response.status_code == 404, response.text
    assert _problem(response)["detail"]
