"""``pizzeria up`` as a user runs it: embedded databases, a clean stop, and nothing lost.

No ``DATABASE_URL``/``REDIS_URL``: the command must start its own PostgreSQL and Valkey
under ``PIZZERIA_DATA_DIR``, open the shop, stop everything on SIGTERM with exit code 0,
and on a second start over the same data directory still know every account.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import psutil
import pytest

from tests.support.api import PASSWORD
from tests.support.env import ROOT
from tests.support.processes import free_port

DEMO_CUSTOMER = "customer@pizzeria.test"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


@dataclass
class Up:
    """One running ``pizzeria up``: its process, URL, output and every process it started."""

    process: subprocess.Popen[str]
    url: str
    data_dir: Path
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    descendants: list[psutil.Process] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.stdout) + "\n--- stderr ---\n" + "".join(self.stderr[-60:])


def _drain(stream: IO[str], into: list[str]) -> None:
    for line in stream:
        into.append(line)


def _up_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DATABASE_URL", "REDIS_URL", "PAYMENT_PROVIDER_URL"):
        env.pop(name, None)
    env["PIZZERIA_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_ready(up: Up) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if up.process.poll() is not None:
            pytest.fail(f"pizzeria up exited with {up.process.returncode}:\n{up.output()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{up.url}/health/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"{up.url}/health/ready not 200 after {READY_TIMEOUT}s:\n{up.output()}")


def _wait_for_stdout(up: Up, *needles: str, timeout: float = 10.0) -> str:
    """The output so far, once it holds every needle (the URL is announced after ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        printed = "".join(up.stdout)
        if all(needle in printed for needle in needles):
            return printed
        if up.process.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"pizzeria up never printed {needles}:\n{up.output()}")


def _leftovers(up: Up) -> list[str]:
    """Processes still alive that belong to this run: started by it or using its data dir."""
    alive: list[str] = []
    for proc in up.descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {' '.join(proc.cmdline())}")
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(up.data_dir) in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            alive.append(f"{proc.info['pid']} {cmdline}")
    return sorted(set(alive))


@contextlib.contextmanager
def pizzeria_up(data_dir: Path) -> Iterator[Up]:
    """Run ``pizzeria up`` until the block ends, then SIGTERM it and check it stopped clean."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "up", "--port", str(port)],
        cwd=ROOT,
        env=_up_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    up = Up(process=process, url=f"http://127.0.0.1:{port}", data_dir=data_dir)
    assert process.stdout is not None and process.stderr is not None
    for stream, lines in ((process.stdout, up.stdout), (process.stderr, up.stderr)):
        threading.Thread(target=_drain, args=(stream, lines), daemon=True).start()
    try:
        _wait_ready(up)
        up.descendants = psutil.Process(process.pid).children(recursive=True)
        yield up
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            for proc in [*up.descendants, psutil.Process(process.pid)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
            pytest.fail(f"pizzeria up did not stop within {STOP_TIMEOUT}s:\n{up.output()}")
    assert code == 0, f"pizzeria up exited with {code}:\n{up.output()}"
    deadline = time.monotonic() + 3.0
    while (left := _leftovers(up)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, "processes left behind after SIGTERM:\n" + "\n".join(left)


def _token(client: httpx.Client, email: str, password: str) -> str:
    response = client.post("/api/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert isinstance(token, str)
    assert token
    return token


def _demo_password(stdout: str) -> str:
    """The password printed next to the demo customer (``... customer@... / <password>``)."""
    for line in stdout.splitlines():
        if DEMO_CUSTOMER in line and " / " in line:
            return line.rsplit(" / ", 1)[1].strip()
    pytest.fail(f"no demo customer line printed:\n{stdout}")


def test_pizzeria_up_runs_stops_cleanly_and_keeps_its_data(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A short path: PostgreSQL's Unix socket lives in the data dir (108-byte limit).
    data_dir = tmp_path_factory.mktemp("up")
    email = f"up-{uuid.uuid4().hex[:12]}@example.com"

    with pizzeria_up(data_dir) as first:
        printed = _wait_for_stdout(first, "embedded PostgreSQL and Valkey", DEMO_CUSTOMER)
        demo_password = _demo_password(printed)
        kinds = " ".join(" ".join(p.cmdline()) for p in first.descendants)
        for part in ("valkey", "serve", "relay", "worker", "sandbox"):
            assert part in kinds, f"no {part} process started: {kinds}"
        assert any(str(data_dir) in line for line in _leftovers(first)), "no embedded postgres"
        with httpx.Client(base_url=first.url, timeout=10) as client:
            _token(client, DEMO_CUSTOMER, demo_password)
            signup = client.post(
                "/api/auth/signup", json={"email": email, "password": PASSWORD, "name": "Up Test"}
            )
            assert signup.status_code == 201, signup.text
            kept = _token(client, email, PASSWORD)
    secrets_file = data_dir / "secrets.env"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600, "secrets readable by others"
    secrets = secrets_file.read_text()
    assert "SECRET_KEY=" in secrets and "COURIER_WEBHOOK_SECRET=" in secrets

    with pizzeria_up(data_dir) as second, httpx.Client(base_url=second.url, timeout=10) as client:
        _token(client, DEMO_CUSTOMER, demo_password)
        _token(client, email, PASSWORD)
        # The same secrets again: a token from the first run still works.
        mine = client.get("/api/orders", headers={"Authorization": f"Bearer {kept}"})
        assert mine.status_code == 200, mine.text
    assert secrets_file.read_text() == secrets
