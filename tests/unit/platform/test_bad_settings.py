"""A setting the shop cannot run with stops a process at once, in one line that names
the variable: not a traceback from wherever it is first used, and never a quiet start
that fails every request later (an unknown time zone) or runs insecurely (``maybe``
read as "no HTTPS")."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.platform.settings import BadSetting, Settings

SECRETS = {"SECRET_KEY": "k" * 40, "COURIER_WEBHOOK_SECRET": "w" * 40}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "notaurl"),
        ("REDIS_URL", "127.0.0.1:6379"),
        ("REDIS_STATE_URL", "localhost"),
        ("JWT_TTL_SECONDS", "abc"),
        ("DATABASE_TIMEOUT_SECONDS", "soon"),
        ("SESSION_IDLE_SECONDS", "-1"),
        ("PIZZERIA_HTTPS", "maybe"),
        ("PIZZERIA_TIMEZONE", "Mars/Base"),
        ("WORKER_MAX_JOBS", "0"),
        ("WORKER_POLL_DELAY", "-1"),
        ("LOG_LEVEL", "bogus"),
        ("LOG_FORMAT", "xml"),
        ("METRICS_PORT", "70000"),
    ],
)
def test_a_setting_the_shop_cannot_run_with_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(BadSetting, match=f"^{variable}="):
        Settings()


def test_a_database_url_as_managed_databases_give_it_is_taken_and_a_password_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://shop:s3cret@db.internal:5432/pizzeria")
    assert Settings().db.url == "postgresql+asyncpg://shop:s3cret@db.internal:5432/pizzeria"
    monkeypatch.setenv("DATABASE_URL", "mysql://shop:s3cret@db.internal/pizzeria")
    with pytest.raises(BadSetting) as refused:
        Settings()
    assert "s3cret" not in str(refused.value) and "shop:***@db.internal" in str(refused.value)


@pytest.mark.parametrize("value", ["1", "true", "YES", "on", "0", "false", "no", "off"])
def test_a_switch_takes_the_usual_words(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PIZZERIA_HTTPS", value)
    assert Settings().security.https is (value.lower() in {"1", "true", "yes", "on"})


def test_a_part_started_with_a_bad_setting_says_it_in_one_line() -> None:
    env = {**os.environ, **SECRETS, "PIZZERIA_TIMEZONE": "Mars/Base"}
    ran = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker", "coupon"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 1, ran.stderr
    assert ran.stderr.strip().splitlines() == [
        "Error: refusing to start: PIZZERIA_TIMEZONE='Mars/Base': use an IANA zone such as "
        "Asia/Seoul"
    ]


def test_the_direct_url_is_read_like_the_pooled_one_and_sslmode_is_asyncpgs_ssl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "DATABASE_URL", "postgresql://shop:pw@pgbouncer:6432/pizzeria?sslmode=require"
    )
    monkeypatch.setenv("DATABASE_DIRECT_URL", "postgres://shop:pw@db:5432/pizzeria")
    settings = Settings()
    assert settings.db.url == "postgresql+asyncpg://shop:pw@pgbouncer:6432/pizzeria?ssl=require"
    assert settings.db.direct_url == "postgresql+asyncpg://shop:pw@db:5432/pizzeria"
    monkeypatch.setenv("DATABASE_DIRECT_URL", "sqlite:///x.db")
    with pytest.raises(BadSetting, match=r"^DATABASE_DIRECT_URL="):
        Settings()
