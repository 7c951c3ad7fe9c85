"""Event contracts as JSON Schemas, and what counts as breaking one.

The schemas are committed (``docs/events/<Type>.v<VERSION>.json``) so that a change a
consumer could trip over shows up in review and fails a test. A consumer of an event
reads fields it knows and ignores the rest, and old rows in the outbox are read with
today's contract, so for one version of a contract:

- a field may be added only if it is optional (old rows lack it);
- no field may be removed, retyped, or become required.

Anything else needs a new ``VERSION`` (and so a new schema file beside the old one).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from app.platform.events import DomainEvent

Schema = dict[str, Any]
#: keys that document a field without changing what a reader accepts
_COSMETIC = frozenset({"default", "description", "title", "examples"})


def schema_of(event: type[DomainEvent]) -> Schema:
    schema: Schema = msgspec.json.schema(event)
    schema["x-event"] = event.TYPE
    schema["x-version"] = event.VERSION
    schema["x-aggregate"] = event.AGGREGATE
    return schema


def file_name(event: type[DomainEvent]) -> str:
    return f"{event.TYPE}.v{event.VERSION}.json"


def render(schema: Schema) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _shape(field: Schema) -> Schema:
    return {k: v for k, v in field.items() if k not in _COSMETIC}


def breaking_changes(committed: Schema, current: Schema) -> list[str]:
    """What in ``current`` would break a consumer written against ``committed``."""
    problems: list[str] = []
    old_defs: dict[str, Schema] = committed.get("$defs", {})
    new_defs: dict[str, Schema] = current.get("$defs", {})
    for name, old in old_defs.items():
        new = new_defs.get(name)
        if new is None:
            problems.append(f"{name}: the shape is gone")
            continue
        old_props: dict[str, Schema] = old.get("properties", {})
        new_props: dict[str, Schema] = new.get("properties", {})
        for field, spec in old_props.items():
            if field not in new_props:
                problems.append(f"{name}.{field}: removed")
            elif _shape(spec) != _shape(new_props[field]):
                problems.append(f"{name}.{field}: type changed")
        for field in sorted(set(new.get("required", [])) - set(old.get("required", []))):
            problems.append(f"{name}.{field}: newly required (old events lack it)")
    return problems


def write(events: Iterable[type[DomainEvent]], folder: Path) -> list[str]:
    """Write every contract's schema; refuse (and name it) where the committed schema of
    the same version would be broken: that change needs a new ``VERSION``."""
    folder.mkdir(parents=True, exist_ok=True)
    refused: list[str] = []
    for event in events:
        path = folder / file_name(event)
        current = schema_of(event)
        if path.exists():
            problems = breaking_changes(json.loads(path.read_text()), current)
            if problems:
                refused.append(f"{event.TYPE}: " + "; ".join(problems))
                continue
        path.write_text(render(current))
    return refused
