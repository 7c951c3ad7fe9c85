"""Secrets: refused when missing, published or short (outside demo mode); ``pizzeria up``
makes them once per data folder."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from app.platform.settings import (
    DEV_COURIER_WEBHOOK_SECRET,
    DEV_SECRET_KEY,
    InsecureSettings,
    Settings,
    require_secrets,
)
from devtools.launcher import ensure_secrets

GOOD = "x" * 40


def _settings(secret: str, webhook: str, demo: bool = False, previous: str = "") -> Settings:
    base = Settings()
    return dataclasses.replace(
        base,
        demo=demo,
        security=dataclasses.replace(base.security, secret_key=secret),
        partners=dataclasses.replace(
            base.partners,
            courier_webhook_secret=webhook,
            courier_webhook_secret_previous=previous,
        ),
    )


@pytest.mark.parametrize(
    ("secret", "webhook", "previous", "named"),
    [
        (DEV_SECRET_KEY, GOOD, "", "SECRET_KEY is a published default"),
        ("", GOOD, "", "SECRET_KEY is not set"),
        ("too-short", GOOD, "", "SECRET_KEY is shorter than 32"),
        (GOOD, DEV_COURIER_WEBHOOK_SECRET, "", "COURIER_WEBHOOK_SECRET is a published"),
        (GOOD, "   ", "", "COURIER_WEBHOOK_SECRET is not set"),
        (GOOD, GOOD, "short", "COURIER_WEBHOOK_SECRET_PREVIOUS is shorter"),
    ],
)
def test_weak_secrets_are_refused_naming_the_variable(
    secret: str, webhook: str, previous: str, named: str
) -> None:
    with pytest.raises(InsecureSettings, match=named):
        require_secrets(_settings(secret, webhook, previous=previous))


def test_demo_mode_tolerates_the_development_defaults() -> None:
    require_secrets(_settings(DEV_SECRET_KEY, DEV_COURIER_WEBHOOK_SECRET, demo=True))
    require_secrets(_settings(GOOD, GOOD))


def test_up_makes_secrets_once_per_data_folder_private_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SECRET_KEY", "COURIER_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    ensure_secrets(tmp_path)
    first = {name: os.environ[name] for name in ("SECRET_KEY", "COURIER_WEBHOOK_SECRET")}
    path = tmp_path / "secrets.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert all(len(value) >= 32 for value in first.values())
    assert first["SECRET_KEY"] != first["COURIER_WEBHOOK_SECRET"]
    require_secrets(Settings())

    for name in first:
        monkeypatch.delenv(name)
    ensure_secrets(tmp_path)
    assert {name: os.environ[name] for name in first} == first, "reused, not made again"

    other = tmp_path / "other"
    for name in first:
        monkeypatch.delenv(name)
    ensure_secrets(other)
    assert os.environ["SECRET_KEY"] != first["SECRET_KEY"], "one set per data folder"


def test_a_secret_set_by_the_operator_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", GOOD)
    monkeypatch.delenv("COURIER_WEBHOOK_SECRET", raising=False)
    ensure_secrets(tmp_path)
    assert os.environ["SECRET_KEY"] == GOOD
