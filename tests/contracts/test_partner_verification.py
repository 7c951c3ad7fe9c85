"""Provider side of the committed pacts: the real sandbox process (payment provider and
delivery partner, started by the ``sandbox_url`` fixture) replays every interaction the
shop's adapters rely on, and sends every webhook the shop's endpoint understands. A
change on either side that breaks the other fails here or in the consumer tests."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from pact import Verifier

from app.delivery.gateway import SIGNATURE_HEADER
from tests.support.pacts import (
    CONSUMER,
    DELIVERY_PARTNER,
    PAYMENT_PROVIDER,
    WEBHOOK_CONSUMER,
    pact_file,
)

pytestmark = pytest.mark.contracts


def set_up_state(sandbox_url: str, kind: str) -> Any:
    """The provider states the pacts name, made real in the sandbox through its set-up
    endpoints (``a charge exists``, ``a pickup exists``, with the id and status given)."""

    def handler(state: str, action: str, parameters: dict[str, Any] | None) -> None:
        if action != "setup" or not state:
            return
        params = dict(parameters or {})
        path = {
            "a payment method exists": "payments/payment-methods",
            "a charge exists": "payments/charges",
            "a pickup exists": "courier/pickups",
        }
        assert state in path, f"unknown provider state: {state}"
        response = httpx.put(
            f"{sandbox_url}/sandbox/{path[state]}/{params.pop('id')}", json=params, timeout=10
        )
        response.raise_for_status()

    return handler


def verify(verifier: Verifier) -> None:
    try:
        verifier.verify()
    except Exception as exc:  # the verifier's own report says which interaction broke
        pytest.fail(f"{exc}\n{verifier.output(strip_ansi=True)}")


@pytest.mark.parametrize("provider", [PAYMENT_PROVIDER, DELIVERY_PARTNER])
def test_the_sandbox_honours_the_shop_s_http_contract(sandbox_url: str, provider: str) -> None:
    verifier = (
        Verifier(provider, host="127.0.0.1")
        .add_transport(url=sandbox_url)
        .add_source(pact_file(CONSUMER, provider))
        .state_handler(set_up_state(sandbox_url, provider))
        .set_error_on_empty_pact(enabled=True)
    )
    verify(verifier)


class _Webhooks:
    """Catches the partner's webhooks on a local port, as the shop would receive them."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.arrived = threading.Condition()

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with catcher.arrived:
                    catcher.received.append((body, dict(self.headers.items())))
                    catcher.arrived.notify_all()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status": "ok"}')

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/webhooks/courier"
        finally:
            server.shutdown()
            server.server_close()

    def next_after(self, seen: int, timeout: float = 20.0) -> tuple[bytes, dict[str, str]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) > seen, timeout), (
                "the partner sent no webhook"
            )
            return self.received[seen]


def test_the_sandbox_sends_the_webhooks_the_shop_understands(sandbox_url: str) -> None:
    webhooks = _Webhooks()
    with webhooks.serve() as callback_url:
        seed = set_up_state(sandbox_url, DELIVERY_PARTNER)

        def state(state: str, action: str, parameters: dict[str, Any] | None) -> None:
            seed(state, action, {**(parameters or {}), "callbackUrl": callback_url})

        def produce(name: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
            """Ask the real partner to send the webhook the message is named after, and
            hand over the bytes it sent to us (``a picked_up webhook``)."""
            event_type = name.removeprefix("a ").removesuffix(" webhook")
            seen = len(webhooks.received)
            response = httpx.post(
                f"{sandbox_url}/sandbox/courier/pickups/pk_pact_webhook/events",
                json={"type": event_type},
                timeout=20,
            )
            response.raise_for_status()
            body, headers = webhooks.next_after(seen)
            signature = {k.lower(): v for k, v in headers.items()}[SIGNATURE_HEADER.lower()]
            assert signature, "webhooks are signed"
            json.loads(body)
            return {"contents": body, "metadata": None, "content_type": "application/json"}

        verifier = (
            Verifier(DELIVERY_PARTNER, host="127.0.0.1")
            .message_handler(produce)
            .add_source(pact_file(WEBHOOK_CONSUMER, DELIVERY_PARTNER))
            .state_handler(state)
            .set_error_on_empty_pact(enabled=True)
        )
        verify(verifier)
