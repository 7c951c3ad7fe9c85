"""The partner client against a partner that closes a kept-alive connection under a request.

That is the keep-alive race every HTTP client meets: the server drops an idle connection
at the moment the client sends on it, and the request dies without an answer. The partner
here is a few lines of asyncio that does exactly that, every time (an edge we don't own).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from app.platform.partner_http import AiohttpPartner, PartnerClient, partner_client

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Unavailable(Exception):
    pass


class Rejected(Exception):
    def __init__(self, detail: str, status: int) -> None:
        super().__init__(detail)


@dataclass
class ClosingPartner:
    """Answers 201 with keep-alive; the second request on the first connection gets the
    connection closed instead of an answer. Records each request's Idempotency-Key."""

    keys: list[tuple[int, str]] = field(default_factory=list)  # (connection, key)
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection, served = self.connections, 0
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                headers = dict(
                    line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if line
                )
                headers = {name.lower(): value for name, value in headers.items()}
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.keys.append((connection, headers["idempotency-key"]))
                served += 1
                if connection == 1 and served == 2:
                    return  # the server's idle timeout, just as the request arrived
                writer.write(
                    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def partner() -> AsyncIterator[tuple[ClosingPartner, str]]:
    closing = ClosingPartner()
    server = await asyncio.start_server(closing.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield closing, f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_request_on_a_connection_the_partner_just_closed_is_sent_again_with_its_key(
    partner: tuple[ClosingPartner, str],
) -> None:
    closing, url = partner
    async with partner_client(url, 5) as client:
        http = PartnerClient(client, "partner", Unavailable, Rejected, partner="payment")
        first = await http.post("/charges", "key-1", {"n": 1}, operation="charge")
        second = await http.post("/charges", "key-2", {"n": 2}, operation="charge")

    assert (first.status_code, second.status_code) == (201, 201)
    assert closing.keys == [(1, "key-1"), (1, "key-2"), (2, "key-2")], (
        "the lost request went again, on a new connection, as the same request"
    )


async def _unavailable_from(answer: Answer, timeout: float, match: str) -> None:
    """One charge against a partner that answers with ``answer``: ``Unavailable``."""
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with partner_client(f"http://127.0.0.1:{port}", timeout) as client:
            http = PartnerClient(client, "partner", Unavailable, Rejected, partner="payment")
            with pytest.raises(Unavailable, match=match):
                await http.post("/charges", "key-1", {}, operation="charge")
    finally:
        server.close()
        await server.wait_closed()


async def test_a_partner_that_never_answers_is_unavailable_after_one_retry() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    await _unavailable_from(hang_up, 5, "unreachable")


def test_idle_partner_connections_expire_before_a_default_server_closes_them() -> None:
    client = partner_client("http://partner.invalid", 5)
    assert isinstance(client, AiohttpPartner)
    assert client.keepalive_seconds < 5.0, "uvicorn closes idle connections after 5 s"
    assert client.timeout_seconds == 5


async def test_a_partner_that_answers_too_late_times_out() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(2)
        writer.close()

    await _unavailable_from(stall, 0.2, "timed out")


async def test_nobody_listening_is_unavailable() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with partner_client(f"http://127.0.0.1:{port}", 1) as client:
        http = PartnerClient(client, "partner", Unavailable, Rejected, partner="payment")
        with pytest.raises(Unavailable, match="unreachable"):
            await http.post("/charges", "key-1", {}, operation="charge")


async def test_the_answer_arrives_whole_with_its_status_and_headers(
    partner: tuple[ClosingPartner, str],
) -> None:
    _, url = partner
    async with partner_client(url, 5) as client:
        http = PartnerClient(client, "partner", Unavailable, Rejected, partner="payment")
        response = await http.post("/charges", "k", {"n": 1}, operation="charge")
    assert (response.status_code, response.reason_phrase) == (201, "Created")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}
