"""Where the partner contracts live, and how a consumer test keeps the committed pact
current: it writes the pact it just proved to a scratch directory and compares it with
the one in the repository (``PACT_UPDATE=1`` rewrites the committed file instead)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pact import Pact

# The pact library reports usage over the network unless told not to; tests stay offline.
os.environ.setdefault("PACT_DO_NOT_TRACK", "true")

PACT_DIR = Path(__file__).resolve().parents[1] / "contracts" / "pacts"
CONSUMER = "pizzeria"
WEBHOOK_CONSUMER = "pizzeria-courier-webhooks"
PAYMENT_PROVIDER = "sandbox-payment-provider"
DELIVERY_PARTNER = "sandbox-delivery-partner"


def new_pact(consumer: str, provider: str) -> Pact:
    return Pact(consumer, provider).with_specification("V4")


def pact_file(consumer: str, provider: str) -> Path:
    return PACT_DIR / f"{consumer}-{provider}.json"


def _comparable(pact: dict[str, Any]) -> dict[str, Any]:
    """The contract itself: the library versions in the metadata may differ."""
    return {key: value for key, value in pact.items() if key != "metadata"}


def keep_committed_pact_current(pact: Pact, scratch: Path) -> None:
    """Fail when the pact the test proved differs from the committed one."""
    committed = pact_file(pact.consumer, pact.provider)
    if os.environ.get("PACT_UPDATE") == "1":
        pact.write_file(PACT_DIR, overwrite=True)
        return
    pact.write_file(scratch, overwrite=True)
    proved = json.loads((scratch / committed.name).read_text())
    assert committed.exists(), f"{committed} is missing: run the test with PACT_UPDATE=1"
    assert _comparable(proved) == _comparable(json.loads(committed.read_text())), (
        f"the contract changed: review it, then run with PACT_UPDATE=1 and commit {committed}"
    )
