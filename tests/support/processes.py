"""Real processes for tests: the sandbox partners and the whole shop."""

from __future__ import annotations

import contextlib
import os
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

from tests.support import env
from workers import QUEUES


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(
    args: list[str], extra_env: dict[str, str], log_dir: Path | None = None
) -> subprocess.Popen[bytes]:
    """``pizzeria ARGS`` as a process; its output goes to ``log_dir/<command>.log`` if
    given (``serve.log``, ``worker-payment.log``...)."""
    output = None
    if log_dir is not None:
        name = "-".join(args[:2]) if args[0] == "worker" else args[0]
        output = (log_dir / f"{name}.log").open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            cwd=env.ROOT,
            env={**os.environ, **extra_env},
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
        )
    finally:
        if output is not None:
            output.close()  # the child has its own copy


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def start_sandbox() -> Iterator[str]:
    port = free_port()
    # The partner's riders act fast in tests; webhooks go to whichever shop asked. Their
    # estimate says as much: a rider who delivers in a second but promises 12 minutes makes
    # every order late once the shop's history has learnt that deliveries take seconds.
    process = spawn(
        ["sandbox", "--port", str(port)],
        {
            "SANDBOX_COURIER_AUTOPILOT": "1",
            "SANDBOX_COURIER_STEP_SECONDS": "0.3",
            "SANDBOX_COURIER_ETA_MINUTES": "0.05",
            # A return's rider collects only when a test sends them: a refund stays
            # requested as long as the test needs it to (test_return_trips drives them).
            "SANDBOX_COURIER_COLLECT_SECONDS": "3600",
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", process)
        yield url
    finally:
        stop([process])


@dataclass
class Shop:
    """A running shop: its URL and environment, and control over its worker processes."""

    url: str
    env: dict[str, str]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: where each process's output goes (None: the test's own output)
    log_dir: Path | None = None
    #: the relay's and each worker's metrics port ("relay", "worker-<queue>"), if asked for
    metrics_ports: dict[str, int] = field(default_factory=dict)

    def stop_worker(self, queue: str) -> None:
        stop([self.workers.pop(queue)])

    def start_worker(self, queue: str) -> None:
        self.workers[queue] = spawn(
            ["worker", queue, *self._metrics_args(f"worker-{queue}")], self.env, self.log_dir
        )

    def _metrics_args(self, part: str) -> list[str]:
        port = self.metrics_ports.get(part)
        return ["--metrics-port", str(port)] if port else []


@contextlib.contextmanager
def start_shop(
    sandbox_url: str,
    *,
    database_name: str = env.SHOP_DB,
    redis_db: int = env.SHOP_REDIS_DB,
    extra_env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    metrics_ports: bool = False,
) -> Iterator[Shop]:
    """The whole shop as processes; a second shop needs its own database and Redis db."""
    database = env.fresh_database(database_name, redis_db=redis_db)
    port = free_port()
    shop_env = {
        "DATABASE_URL": database,
        "REDIS_URL": env.redis_url(redis_db),
        "PAYMENT_PROVIDER_URL": sandbox_url,
        "COURIER_PARTNER_URL": sandbox_url,
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        # Small breakers so outage tests trip them quickly.
        "BREAKER_WINDOW_SIZE": "6",
        "BREAKER_MINIMUM_CALLS": "3",
        "BREAKER_OPEN_SECONDS": "2",
        "BREAKER_HALF_OPEN_CALLS": "1",
        "PARTNER_TIMEOUT": "1",
        "WORKER_RETRY_MAX_SECONDS": "1",
        # Every test customer signs up from 127.0.0.1: only the per-account limits bite.
        "RATE_LIMIT_SIGNUP_PER_CLIENT": "100000",
        "RATE_LIMIT_SIGNIN_PER_CLIENT": "100000",
        "RATE_LIMIT_ORDERS_PER_CLIENT": "100000",
        "RATE_LIMIT_ORDERS_PER_ACCOUNT": "1000",
        **(extra_env or {}),
    }
    shop = Shop(url=f"http://127.0.0.1:{port}", env=shop_env, log_dir=log_dir)
    if metrics_ports:
        parts = ["relay", *(f"worker-{queue}" for queue in QUEUES)]
        shop.metrics_ports = {part: free_port() for part in parts}
    web = spawn(["serve", "--port", str(port)], shop_env, log_dir)
    relay = spawn(["relay", *shop._metrics_args("relay")], shop_env, log_dir)
    for queue in QUEUES:
        shop.start_worker(queue)
    try:
        wait_http(f"{shop.url}/health/ready", web, timeout=300)  # a busy machine is slow
        yield shop
    finally:
        stop([web, relay, *shop.workers.values()])
        env.drop_database(database_name)


@contextlib.contextmanager
def extra_web(shop: Shop, count: int, **overrides: str) -> Iterator[list[str]]:
    """More web processes on the shop's database and Redis, with other settings."""
    ports = [free_port() for _ in range(count)]
    processes = [spawn(["serve", "--port", str(p)], {**shop.env, **overrides}) for p in ports]
    try:
        for port, process in zip(ports, processes, strict=True):
            wait_http(f"http://127.0.0.1:{port}/health/ready", process)
        yield [f"http://127.0.0.1:{p}" for p in ports]
    finally:
        stop(processes)


@contextlib.contextmanager
def start_redis() -> Iterator[str]:
    """A Redis server of the test's own (keeps nothing on disk), for a test that runs a
    second shop: its queues, sessions and breakers then share nothing with the others."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="pizzeria-redis-") as workdir:
        process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 10
            while True:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), timeout=0.2),
                ):
                    break
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield f"{url}/0"
        finally:
            stop([process])
