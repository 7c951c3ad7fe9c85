"""What every partner adapter (payment provider, delivery partner) does the same way over
HTTP: idempotent POSTs, and sorting answers into "unavailable" (retry; counts against the
circuit breaker) and "rejected" (a definite no).

Keep-alive: a partner's server closes an idle connection after its own timeout (uvicorn:
5 s, which is also httpx's default expiry). A request sent down a connection at the moment
the server closes it fails without an answer ("server disconnected without sending a
response"): the partner never saw it. Two things keep that from reaching a customer as a
503: our idle connections expire well before any server's (``KEEPALIVE_SECONDS``), and a
POST that died that way is sent once more on a fresh connection with the same
``Idempotency-Key`` (safe whatever the partner saw: the key makes it one request).

Transport: a partner call goes straight through aiohttp's pool and C parser
(``AiohttpPartner``). httpx on top of it (its request and response objects, URL merging,
stdlib JSON) cost another 0.4 ms of CPU per call, as much as the call itself (0.83 against
0.41 ms in a loop of POSTs to the sandbox, round 12), and an order makes three. Tests
that serve a partner in-process (an ASGI app, a canned answer, a pact mock) hand their
httpx client to ``HttpxPartner`` instead: the same ``PartnerTransport``, so everything
above it, from retries to the naming of failures, is the code production runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp
import httpx
import msgspec
from yarl import URL

from app.platform.metrics import timed_partner_call

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
#: an idle connection to a partner is dropped after this long (below uvicorn's 5 s)
KEEPALIVE_SECONDS = 2.0
#: 4xx answers that mean "not now" rather than "no"
TRANSIENT_CLIENT_ERRORS = frozenset({408, 429})
T = TypeVar("T")


class PartnerTimeout(TimeoutError):
    """No answer in time (the partner may have acted on the request). A ``TimeoutError``
    and a ``ConnectionError`` below: transient for ``app.platform.failures``."""


class PartnerUnreachable(ConnectionError):
    """No connection, or the connection failed: no answer."""


class ConnectionLost(PartnerUnreachable):
    """A kept-alive connection died under the request before any answer: worth one more
    try on a fresh connection (the idempotency key makes it one request)."""


@dataclass(frozen=True)
class PartnerResponse:
    """A partner's answer, read whole."""

    status_code: int
    content: bytes
    reason_phrase: str = ""
    #: header names in lower case
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON (``ValueError`` when it is not)."""
        return msgspec.json.decode(self.content)

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


class PartnerTransport(Protocol):
    """One partner's base URL, timeout and connections."""

    async def request(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> PartnerResponse: ...

    async def aclose(self) -> None: ...


def partner_client(base_url: str, timeout_seconds: float) -> AiohttpPartner:
    """The transport for one partner: its base URL, our timeout, short keep-alive."""
    return AiohttpPartner(base_url, timeout_seconds, keepalive_seconds=KEEPALIVE_SECONDS)


class AiohttpPartner:
    """A partner over aiohttp's connection pool. Failures come out as ``PartnerTimeout``
    (no answer in time), ``ConnectionLost`` (a connection that died under the request)
    or ``PartnerUnreachable`` (nobody listening, any other transport failure)."""

    def __init__(self, base_url: str, timeout_seconds: float, *, keepalive_seconds: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.keepalive_seconds = keepalive_seconds
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeout_seconds,
            sock_connect=timeout_seconds,
            sock_read=timeout_seconds,
        )
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        """The session is made on first use: aiohttp binds it to the running loop."""
        connector = aiohttp.TCPConnector(keepalive_timeout=self.keepalive_seconds)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )
        return self._session

    async def request(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> PartnerResponse:
        session = self._session or self._open()
        try:
            async with session.request(
                method,
                # as quoted by the adapter (an idempotency key's ":" stays "%3A")
                URL(self.base_url + path, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                content = await response.read()
        except TimeoutError as exc:
            raise PartnerTimeout(f"no answer in time: {exc!r}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise PartnerUnreachable(str(exc)) from exc
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
            aiohttp.ClientPayloadError,
        ) as exc:
            raise ConnectionLost(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise PartnerUnreachable(repr(exc)) from exc
        return PartnerResponse(
            response.status,
            content,
            response.reason or "",
            {name.lower(): value for name, value in response.headers.items()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AiohttpPartner:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


class HttpxPartner:
    """A partner through an httpx client: for tests that serve the partner in-process (an
    ASGI app, canned answers, a pact mock server), with the failures named the same."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def request(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> PartnerResponse:
        try:
            response = await self.client.request(method, path, headers=headers, content=body)
        except httpx.TimeoutException as exc:
            raise PartnerTimeout(repr(exc)) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise ConnectionLost(repr(exc)) from exc
        except httpx.TransportError as exc:
            raise PartnerUnreachable(repr(exc)) from exc
        return PartnerResponse(
            response.status_code,
            response.content,
            response.reason_phrase,
            {name.lower(): value for name, value in response.headers.items()},
        )

    async def aclose(self) -> None:
        await self.client.aclose()


_JSON = {"Content-Type": "application/json"}


class PartnerClient:
    """One partner's transport and how its failures are named."""

    def __init__(
        self,
        transport: PartnerTransport,
        name: str,
        unavailable: type[Exception],
        rejected: Callable[[str, int], Exception],
        *,
        partner: str,
    ) -> None:
        self.transport = transport
        self.name = name
        self.partner = partner  # the breaker's and the metrics' short name
        self.unavailable = unavailable
        self.rejected = rejected

    async def post(
        self, path: str, idempotency_key: str, payload: Any, *, operation: str
    ) -> PartnerResponse:
        """Send one request (timed as ``operation``); every transport-level failure is
        ``unavailable``. A connection that died under the request is retried once."""
        headers = {IDEMPOTENCY_HEADER: idempotency_key}
        body = None
        if payload is not None:
            headers |= _JSON
            body = msgspec.json.encode(payload)
        with timed_partner_call(self.partner, operation):
            try:
                return await self.transport.request("POST", path, headers, body)
            except ConnectionLost as exc:
                log.info("%s %s: %r; once more on a new connection", self.name, operation, exc)
                return await self._named(self.transport.request("POST", path, headers, body))
            except (PartnerTimeout, PartnerUnreachable) as exc:
                raise self._unavailable(exc) from exc

    async def get(self, path: str) -> PartnerResponse:
        """Read something (safe to repeat, so no idempotency key)."""
        return await self._named(self.transport.request("GET", path, {}, None))

    async def _named(self, answer: Any) -> PartnerResponse:
        try:
            response: PartnerResponse = await answer
        except (PartnerTimeout, PartnerUnreachable) as exc:
            raise self._unavailable(exc) from exc
        return response

    def _unavailable(self, exc: Exception) -> Exception:
        if isinstance(exc, PartnerTimeout):
            return self.unavailable(f"{self.name} timed out: {exc}")
        return self.unavailable(f"{self.name} unreachable: {exc}")

    def decode(self, response: PartnerResponse, into: type[T]) -> T:
        """A success status with a body we cannot read is the partner misbehaving."""
        try:
            return msgspec.json.decode(response.content, type=into)
        except msgspec.DecodeError as exc:
            raise self.unavailable(f"unreadable {self.name} response: {exc}") from exc

    def unexpected(self, response: PartnerResponse) -> Exception:
        """Sort a status the caller did not expect into transient vs. refused."""
        status = response.status_code
        if 400 <= status < 500 and status not in TRANSIENT_CLIENT_ERRORS:
            return self.rejected(detail(response), status)
        return self.unavailable(f"{self.name} answered {status}: {detail(response)}")


def detail(response: PartnerResponse) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return response.text[:200]
