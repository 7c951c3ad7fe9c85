"""A small Server-Sent Events client that behaves like a browser's ``EventSource``.

It reads ``id:``/``event:``/``data:``/``retry:`` fields, and when the server ends the stream
it waits the ``retry`` hint and reconnects with ``Last-Event-ID``, as browsers do. Tests
use it to see what a live page would see across a web replica's restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SseMessage:
    event: str = "message"
    data: str = ""
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SseStream:
    """What one connection delivered, and how it ended."""

    messages: list[SseMessage] = field(default_factory=list)
    retry_ms: int | None = None
    ended_at: float | None = None  # monotonic; None while open
    error: str | None = None


async def read_stream(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    stream: SseStream,
    opened: asyncio.Event | None = None,
) -> SseStream:
    """Read one connection until the server ends it (filling ``stream`` as it goes)."""
    try:
        async with client.stream(
            "GET", url, headers={**headers, "Accept": "text/event-stream"}, timeout=None
        ) as response:
            if response.status_code != 200:
                stream.error = f"HTTP {response.status_code}"
                return stream
            if opened is not None:
                opened.set()
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line == "":
                    if "data" in fields:
                        stream.messages.append(
                            SseMessage(
                                fields.get("event", "message"), fields["data"], fields.get("id")
                            )
                        )
                    fields = {}
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "retry" and value.isdigit():
                    stream.retry_ms = int(value)
                elif name == "data" and "data" in fields:
                    fields["data"] += "\n" + value
                else:
                    fields[name] = value
    except httpx.HTTPError as exc:
        stream.error = f"{type(exc).__name__}: {exc}"
    finally:
        stream.ended_at = time.monotonic()
    return stream


@dataclass
class EventSource:
    """Follows ``url`` for as long as it runs, reconnecting like a browser."""

    url: str
    headers: dict[str, str]
    streams: list[SseStream] = field(default_factory=list)
    default_retry_ms: int = 3000

    @property
    def messages(self) -> list[SseMessage]:
        return [m for s in self.streams for m in s.messages]

    @property
    def last_id(self) -> str | None:
        ids = [m.id for m in self.messages if m.id is not None]
        return ids[-1] if ids else None

    async def run(self, client: httpx.AsyncClient, opened: asyncio.Event | None = None) -> None:
        retry_ms = self.default_retry_ms
        while True:
            stream = SseStream()
            self.streams.append(stream)
            headers = dict(self.headers)
            if self.last_id is not None:
                headers["Last-Event-ID"] = self.last_id
            await read_stream(client, self.url, headers, stream, opened)
            retry_ms = stream.retry_ms or retry_ms
            await asyncio.sleep(retry_ms / 1000)

    async def wait_for(self, predicate: Any, what: str, timeout: float = 20.0) -> SseMessage:
        """The first message (across reconnects) for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    if predicate(message):
                        return message
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.url} never delivered {what}; streams: {self.streams}")
