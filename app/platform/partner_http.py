"""What every partner adapter (payment provider, delivery partner) does the same way over
HTTP: idempotent POSTs, and sorting answers into "unavailable" (retry; counts against the
circuit breaker) and "rejected" (a definite no)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import msgspec

from app.platform.metrics import timed_partner_call

IDEMPOTENCY_HEADER = "Idempotency-Key"
#: 4xx answers that mean "not now" rather than "no"
TRANSIENT_CLIENT_ERRORS = frozenset({408, 429})
T = TypeVar("T")


class PartnerClient:
    """One partner's HTTP client and how its failures are named."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        name: str,
        unavailable: type[Exception],
        rejected: Callable[[str, int], Exception],
        *,
        partner: str,
    ) -> None:
        self.client = client
        self.name = name
        self.partner = partner  # the breaker's and the metrics' short name
        self.unavailable = unavailable
        self.rejected = rejected

    async def post(
        self, path: str, idempotency_key: str, payload: Any, *, operation: str
    ) -> httpx.Response:
        """Send one request (timed as ``operation``); every transport-level failure is
        ``unavailable``."""
        try:
            with timed_partner_call(self.partner, operation):
                return await self.client.post(
                    path, json=payload, headers={IDEMPOTENCY_HEADER: idempotency_key}
                )
        except httpx.TimeoutException as exc:
            raise self.unavailable(f"{self.name} timed out: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise self.unavailable(f"{self.name} unreachable: {exc!r}") from exc

    async def get(self, path: str) -> httpx.Response:
        """Read something (safe to repeat, so no idempotency key)."""
        try:
            return await self.client.get(path)
        except httpx.TimeoutException as exc:
            raise self.unavailable(f"{self.name} timed out: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise self.unavailable(f"{self.name} unreachable: {exc!r}") from exc

    def decode(self, response: httpx.Response, into: type[T]) -> T:
        """A success status with a body we cannot read is the partner misbehaving."""
        try:
            return msgspec.json.decode(response.content, type=into)
        except msgspec.DecodeError as exc:
            raise self.unavailable(f"unreadable {self.name} response: {exc}") from exc

    def unexpected(self, response: httpx.Response) -> Exception:
        """Sort a status the caller did not expect into transient vs. refused."""
        status = response.status_code
        if 400 <= status < 500 and status not in TRANSIENT_CLIENT_ERRORS:
            return self.rejected(detail(response), status)
        return self.unavailable(f"{self.name} answered {status}: {detail(response)}")


def detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return response.text[:200]
