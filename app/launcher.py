"""``pizzeria up``: the whole shop in one command, for demos and development.

It starts embedded PostgreSQL/Valkey when no ``DATABASE_URL``/``REDIS_URL`` is set,
migrates, loads the demo menu and accounts, then runs every part as its own process
(web, relay, one arq worker per queue, sandbox partners) exactly as production would,
and stops them all cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from app.accounts.models import Role
from app.platform.embedded import EmbeddedPostgres, EmbeddedValkey, free_port
from workers import QUEUES

PR_SET_PDEATHSIG = 1
DEMO_PASSWORD = "pizza-demo-1234"
DEMO_ACCOUNTS = (
    ("customer@pizzeria.test", "Demo Customer", Role.customer),
    ("staff@pizzeria.test", "Demo Staff", Role.staff),
)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def _die_with_parent() -> None:
    """Linux: deliver SIGTERM to the child if ``pizzeria up`` itself is killed."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(name: str, args: list[str], env: dict[str, str]) -> Child:
    command = [sys.executable, "-m", "app.cli", *args]
    return Child(name, subprocess.Popen(command, env=env, preexec_fn=_die_with_parent))


SECRETS_FILE = "secrets.env"
GENERATED_SECRETS = ("SECRET_KEY", "COURIER_WEBHOOK_SECRET", "SANDBOX_VAULT_KEY")


def ensure_secrets(data_dir: Path) -> None:
    """Random secrets made once per data folder (mode 0600) and reused by every later
    ``up``, so sessions and tokens survive a restart; a variable already set wins."""
    path = data_dir / SECRETS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, sep, value = line.partition("=")
            if sep and value:
                stored[name.strip()] = value.strip()
    missing = [name for name in GENERATED_SECRETS if name not in stored]
    if missing:
        stored.update({name: secrets.token_urlsafe(48) for name in missing})
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.writelines(f"{name}={value}\n" for name, value in stored.items())
    os.chmod(path, 0o600)
    for name in GENERATED_SECRETS:
        os.environ.setdefault(name, stored[name])


def prepare_data(demo: bool) -> None:
    """Migrate, load the demo menu and (demo mode) the demo accounts. Idempotent."""
    from app.cli import run_migrations

    run_migrations()
    asyncio.run(load_demo_data(demo))


async def load_demo_data(with_accounts: bool) -> None:
    from app.accounts import service as accounts
    from app.menu import service as menu
    from app.platform.db import create_engine, create_session_factory
    from app.platform.settings import get_settings

    get_settings.cache_clear()
    engine = create_engine(get_settings())
    try:
        async with create_session_factory(engine)() as session:
            await menu.load_demo_menu(session)
            if with_accounts:
                for email, name, role in DEMO_ACCOUNTS:
                    await accounts.ensure_user(
                        session, email=email, password=DEMO_PASSWORD, name=name, role=role
                    )
    finally:
        await engine.dispose()


def up(host: str, port: int) -> int:
    data_dir = Path(os.environ.get("PIZZERIA_DATA_DIR", ".pizzeria")).resolve()
    postgres = EmbeddedPostgres(data_dir) if not os.environ.get("DATABASE_URL") else None
    valkey = EmbeddedValkey(data_dir) if not os.environ.get("REDIS_URL") else None
    children: list[Child] = []
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        ensure_secrets(data_dir)
        if postgres:
            os.environ["DATABASE_URL"] = postgres.start()
        if valkey:
            os.environ["REDIS_URL"] = valkey.start()
        sandbox_port = free_port()
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        os.environ["PAYMENT_PROVIDER_URL"] = sandbox_url
        os.environ["COURIER_PARTNER_URL"] = sandbox_url
        public_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        os.environ.setdefault("PUBLIC_URL", f"http://{public_host}:{port}")
        demo = postgres is not None or os.environ.get("PIZZERIA_DEMO") == "1"
        prepare_data(demo)
        env = dict(os.environ)
        children.append(_spawn("sandbox", ["sandbox", "--port", str(sandbox_port)], env))
        children.append(_spawn("relay", ["relay"], env))
        children.extend(_spawn(f"worker-{q}", ["worker", q], env) for q in QUEUES)
        children.append(_spawn("web", ["serve", "--host", host, "--port", str(port)], env))
        _wait_until_ready(f"http://{host}:{port}/health/ready", children, lambda: stopping)
        _announce(host, port, demo, data_dir if postgres or valkey else None)
        while not stopping:
            for child in children:
                if child.process.poll() is not None:
                    print(
                        f"pizzeria: {child.name} exited with {child.process.returncode}; stopping"
                    )
                    return 1
            time.sleep(0.2)
        return 0
    except RuntimeError as exc:
        print(f"pizzeria: {exc}; stopping", flush=True)
        return 1
    finally:
        _stop_children(children)
        if valkey:
            valkey.stop()
        if postgres:
            postgres.stop()
        print("pizzeria: stopped", flush=True)


def _wait_until_ready(
    url: str, children: list[Child], stopping: Callable[[], bool], timeout: float = 60.0
) -> None:
    """Announce the URL only once the web server answers (and stop if a part died or
    Ctrl-C came first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping():
        for child in children:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    if not stopping():
        raise RuntimeError(f"the web server did not become ready within {timeout:.0f}s")


def _announce(host: str, port: int, demo: bool, data_dir: Path | None) -> None:
    lines = [f"pizzeria: the shop is open at http://{host}:{port}/"]
    if data_dir:
        lines.append(f"pizzeria: embedded PostgreSQL and Valkey keep their data in {data_dir}")
    if demo:
        for email, _, role in DEMO_ACCOUNTS:
            lines.append(f"pizzeria: demo {role.value}: {email} / {DEMO_PASSWORD}")
    lines.append("pizzeria: press Ctrl-C to stop")
    print("\n".join(lines), flush=True)


def _stop_children(children: list[Child], timeout: float = 15.0) -> None:
    """SIGTERM everyone (web first drains, workers finish their jobs), then SIGKILL stragglers."""
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            child.process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            child.process.kill()
