"""Every action the shop audits reads as words on the admin's audit trail, never as its
code ("reason.save" was shown raw)."""

from __future__ import annotations

import re
from pathlib import Path

from app.audit.pages import ACTIONS

ROOT = Path(__file__).resolve().parents[3]
#: ``audit.record(db, who, "action", …)``, over lines too
RECORDED = re.compile(r'audit\.record\(\s*[^,()]+,\s*[^,()]+,\s*"([^"]+)"')


def test_every_audited_action_has_words_on_the_trail() -> None:
    recorded = {
        action
        for path in (ROOT / "app").rglob("*.py")
        for action in RECORDED.findall(path.read_text(encoding="utf-8"))
    }
    assert {"delivery.advance", "reason.save", "event.discard"} <= recorded  # the scan works
    assert recorded - ACTIONS.keys() == set()
