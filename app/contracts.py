"""Regenerate the committed event schemas: ``uv run python -m app.contracts``.

A change that would break a consumer is refused (the command names it and exits 1):
give the event a new ``VERSION`` instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

from app.platform.contracts import write
from app.subscriptions import EVENTS

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "events"


def main() -> int:
    refused = write(EVENTS, SCHEMAS)
    for line in refused:
        print(f"refused: {line}", file=sys.stderr)
    return 1 if refused else 0


if __name__ == "__main__":
    raise SystemExit(main())
