"""A whole shop for the benchmark: ``pizzeria up`` on a fresh data folder and free port.

The bench starts it with embedded PostgreSQL and Valkey (so their CPU belongs to the
shop's process tree and is measured too), with the rate limits raised far above what a
person could hit, and stops it afterwards. A shop already running can be measured
instead (``--url``; its ``up`` process is found through ``PIZZERIA_DATA_DIR``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import httpx

from devtools.embedded import free_port, postgres_url, running_up, valkey_url

#: every rate limit the bench would hit, raised (settings read them from the environment)
RAISED_LIMITS = {
    "RATE_LIMIT_ORDERS_PER_ACCOUNT": "100000000",
    "RATE_LIMIT_ORDERS_PER_CLIENT": "100000000",
    "RATE_LIMIT_SIGNUP_PER_CLIENT": "100000",
    "RATE_LIMIT_SIGNIN_PER_CLIENT": "100000",
    "RATE_LIMIT_SIGNIN_PER_ACCOUNT": "100000",
}
START_TIMEOUT = 300.0


@dataclass
class Shop:
    url: str
    database_url: str | None
    redis_url: str | None
    #: ``pizzeria up``'s pid: the root of the process tree whose CPU is measured
    up_pid: int | None
    started_here: bool = False
    #: its data folder (the secrets ``up`` made live there)
    data_dir: Path | None = None


def _env_for_shop(data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "PUBLIC_URL", "PAYMENT_PROVIDER_URL"}
        and k != "COURIER_PARTNER_URL"
    }
    env.update(RAISED_LIMITS)
    env["PIZZERIA_DATA_DIR"] = str(data_dir)
    return env


def shop_env(*, live_updates: bool) -> dict[str, str]:
    """What the bench's own shop runs with: no courier autopilot (its riders' webhooks
    would land on the web mid-run), and one web process when the run measures live
    updates, whose figures are one process's (``bench_run.require_one_web_process``)."""
    env = {"SANDBOX_COURIER_AUTOPILOT": "0"}
    if live_updates:
        env["PIZZERIA_WEB_REPLICAS"] = "1"
    return env


@contextlib.contextmanager
def started_shop(extra_env: dict[str, str] | None = None) -> Iterator[Shop]:
    """``pizzeria up`` on a temporary data folder; stopped (and the folder removed) after."""
    data_dir = Path(tempfile.mkdtemp(prefix="pizzeria-bench-"))
    port = free_port()
    env = {**_env_for_shop(data_dir), **(extra_env or {})}
    log_path = data_dir / "up.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "up", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        click.echo(f"starting the shop on port {port} (data in {data_dir}) …", err=True)
        _wait_open(process, log_path)
        shop = Shop(
            url=f"http://127.0.0.1:{port}",
            database_url=postgres_url(data_dir / "postgres"),
            redis_url=valkey_url(data_dir),
            up_pid=process.pid,
            started_here=True,
            data_dir=data_dir,
        )
        yield shop
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def _wait_open(process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until ``up`` says the shop is open (every part ready)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if "the shop is open" in text:
            return
        if process.poll() is not None:
            raise click.ClickException(f"pizzeria up exited:\n{text[-3000:]}")
        time.sleep(0.3)
    raise click.ClickException(f"the shop did not open in {START_TIMEOUT:.0f} s")


def running_shop(url: str, database_url: str | None) -> Shop:
    """A shop someone else started; its ``up`` found through ``PIZZERIA_DATA_DIR``."""
    data_dir = Path(os.environ.get("PIZZERIA_DATA_DIR", ".pizzeria")).resolve()
    up_pid = running_up(data_dir)
    return Shop(
        url=url,
        database_url=database_url or postgres_url(data_dir / "postgres"),
        redis_url=os.environ.get("REDIS_URL") or valkey_url(data_dir),
        up_pid=up_pid,
        data_dir=data_dir,
    )


def ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
    return False
