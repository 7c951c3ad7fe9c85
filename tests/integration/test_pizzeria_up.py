"""``pizzeria up`` as a user runs it: embedded databases, a clean stop, and nothing lost.

No ``DATABASE_URL``/``REDIS_URL``: the command must start its own PostgreSQL and Valkey
under ``PIZZERIA_DATA_DIR``, open the shop, stop everything on SIGTERM with exit code 0,
and on a second start over the same data directory still know every account.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
import pytest

from app.platform import priority
from devtools.embedded import MAX_CONNECTIONS
from devtools.launcher import BACKGROUND_NICE, connections_short, default_web_replicas
from tests.support.api import PASSWORD
from tests.support.env import ROOT
from tests.support.processes import free_port

DEMO_CUSTOMER = "customer@pizzeria.test"
READY_TIMEOUT = 300.0  # a loaded 2-core machine: `up` waits while parts progress
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


def _up_env(data_dir: Path, replicas: str | None = None, web: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "PAYMENT_PROVIDER_URL",
        "PIZZERIA_WORKER_REPLICAS",
        "PIZZERIA_BACKGROUND_NICE",
        "PIZZERIA_WEB_REPLICAS",
    ):
        env.pop(name, None)
    if replicas is not None:
        env["PIZZERIA_WORKER_REPLICAS"] = replicas
    if web is not None:
        env["PIZZERIA_WEB_REPLICAS"] = str(web)
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


def _wait_for_stdout(up: Up, *needles: str, timeout: float = READY_TIMEOUT) -> str:
    """The output so far, once it holds every needle. The web answers ready before ``up``
    announces the shop: that waits for every part, and the background parts start at a
    lower CPU priority, so on a busy machine they can take far longer than the web (CI saw
    more than 10 s)."""
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
def pizzeria_up(
    data_dir: Path, replicas: str | None = None, web: int | None = None
) -> Iterator[Up]:
    """Run ``pizzeria up`` until the block ends, then SIGTERM it and check it stopped clean;
    ``replicas`` is its ``PIZZERIA_WORKER_REPLICAS``, ``web`` its ``PIZZERIA_WEB_REPLICAS``."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "up", "--port", str(port)],
        cwd=ROOT,
        env=_up_env(data_dir, replicas, web),
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


@pytest.fixture
def up_dir() -> Iterator[Path]:
    """A short data folder outside pytest's: PostgreSQL's Unix socket lives in it (108-byte
    limit), and it runs as another user, which needs to traverse every parent; pytest
    runs (ours or parallel ones) make ``/tmp/pytest-of-<user>`` private again at any time."""
    path = Path(tempfile.mkdtemp(prefix="pz-up-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _token(client: httpx.Client, email: str, password: str) -> str:
    response = client.post("/api/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert isinstance(token, str)
    assert token
    return token


def _scrape(url: str, timeout: float = 60.0) -> str:
    """A part's metrics, once it serves them (a worker may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return response.text
        if time.monotonic() > deadline:
            pytest.fail(f"no metrics at {url} after {timeout}s")
        time.sleep(0.2)


def _demo_password(stdout: str) -> str:
    """The password printed next to the demo customer (``... customer@... / <password>``)."""
    for line in stdout.splitlines():
        if DEMO_CUSTOMER in line and " / " in line:
            return line.rsplit(" / ", 1)[1].strip()
    pytest.fail(f"no demo customer line printed:\n{stdout}")


def _assert_background_parts_yield(up: Up) -> None:
    """The relay and the workers run BACKGROUND_NICE steps below the web and the sandbox,
    which run at ``up``'s own priority."""
    own = psutil.Process(up.process.pid).nice()
    by_kind: dict[str, set[int]] = {}
    for process in up.descendants:
        line = " ".join(process.cmdline())
        for kind in ("serve", "sandbox", "relay", "worker"):
            if f"app.cli {kind}" in line:
                by_kind.setdefault(kind, set()).add(process.nice())
    assert by_kind["serve"] == by_kind["sandbox"] == {own}, by_kind
    assert by_kind["relay"] == by_kind["worker"] == {min(own + BACKGROUND_NICE, 19)}, by_kind
    _assert_each_part_is_its_own_group(up, own)
    _assert_background_backends_yield(up, own)


def _assert_each_part_is_its_own_group(up: Up, own: int) -> None:
    """Each part a session (so, under autogroup scheduling, a group) of its own, the
    background parts' groups as nice as the parts: ``app.platform.priority``."""
    background = min(own + BACKGROUND_NICE, 19)
    for process in up.descendants:
        line = " ".join(process.cmdline())
        if "app.cli" not in line:
            continue
        assert os.getsid(process.pid) == process.pid, f"not a session of its own: {line}"
        group = priority.group_niceness(process.pid)
        nice = background if ("app.cli relay" in line or "app.cli worker" in line) else 0
        assert group in (None, nice), f"{line}: its group's niceness is {group}"


def _assert_background_backends_yield(up: Up, own: int) -> None:
    """The embedded PostgreSQL's backends, named by the part they serve
    (``application_name``): the relay's and the workers' as nice as those parts, the
    web's at normal priority."""
    backends = _wait_for_backends(up.data_dir, "pizzeria-relay")
    background = min(own + BACKGROUND_NICE, 19)
    for pid, name in backends:
        with contextlib.suppress(psutil.NoSuchProcess):
            nice = background if name.startswith(("pizzeria-relay", "pizzeria-worker")) else 0
            if name.startswith("pizzeria-"):
                assert psutil.Process(pid).nice() == nice, f"{name}'s backend {pid}"
                assert priority.group_niceness(pid) in (None, nice), f"{name}'s backend {pid}"
    names = {name for _, name in backends}
    assert {"pizzeria-web", "pizzeria-relay"} <= names, names


def _embedded_rows(data_dir: Path, sql: str) -> list[Any]:
    """What ``sql`` reads from the embedded PostgreSQL of ``up``'s data folder."""
    import asyncpg

    async def read() -> list[Any]:
        connection = await asyncpg.connect(
            host=str(data_dir / "postgres"), user="postgres", database="pizzeria"
        )
        try:
            return list(await connection.fetch(sql))
        finally:
            await connection.close()

    return asyncio.run(read())


def _wait_for_backends(data_dir: Path, needed: str) -> list[tuple[int, str]]:
    """(pid, application_name) of every client backend, once one is named ``needed``."""
    sql = (
        "SELECT pid, application_name FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    deadline = time.monotonic() + 60
    while True:
        backends = [(row["pid"], row["application_name"]) for row in _embedded_rows(data_dir, sql)]
        if any(name == needed for _, name in backends) or time.monotonic() > deadline:
            return backends
        time.sleep(0.5)


@pytest.mark.timeout(900)
def test_pizzeria_up_runs_stops_cleanly_and_keeps_its_data(up_dir: Path) -> None:
    data_dir = up_dir
    email = f"up-{uuid.uuid4().hex[:12]}@example.com"

    with pizzeria_up(data_dir, replicas="payment=2") as first:
        printed = _wait_for_stdout(first, "embedded PostgreSQL and Valkey", DEMO_CUSTOMER)
        demo_password = _demo_password(printed)
        kinds = " ".join(" ".join(p.cmdline()) for p in first.descendants)
        for part in ("valkey", "serve", "relay", "worker", "sandbox"):
            assert part in kinds, f"no {part} process started: {kinds}"
        # one web process per CPU, at most two; PostgreSQL takes their pools and more
        web = [p for p in first.descendants if "app.cli serve" in " ".join(p.cmdline())]
        assert len(web) == default_web_replicas(), [" ".join(p.cmdline()) for p in web]
        (limit,) = _embedded_rows(data_dir, "SHOW max_connections")
        assert int(limit[0]) == MAX_CONNECTIONS
        assert any(str(data_dir) in line for line in _leftovers(first)), "no embedded postgres"
        with httpx.Client(base_url=first.url, timeout=10) as client:
            _token(client, DEMO_CUSTOMER, demo_password)
            signup = client.post(
                "/api/auth/signup", json={"email": email, "password": PASSWORD, "name": "Up Test"}
            )
            assert signup.status_code == 201, signup.text
            kept = _token(client, email, PASSWORD)
            printed = _wait_for_stdout(first, "metrics of each part")
            assert f"{first.url}/metrics" in printed
            assert "pizzeria_queue_depth" in client.get("/metrics").text
        payment_workers = [
            p for p in first.descendants if "worker payment" in " ".join(p.cmdline())
        ]
        assert len(payment_workers) == 2, "PIZZERIA_WORKER_REPLICAS=payment=2: two processes"
        _assert_background_parts_yield(first)
        for part in ("relay", "worker-payment", "worker-payment-2", "worker-status"):
            port = re.search(rf"{part} :(\d+)", printed)
            assert port, f"no metrics port printed for {part}:\n{printed}"
            assert "process_cpu_seconds_total" in _scrape(f"http://127.0.0.1:{port[1]}/metrics")
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


def _wait_until(condition: Callable[[], bool], what: str, up: Up, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} not seen within {timeout}s:\n{up.output()}")


def _embedded_servers(data_dir: Path) -> list[psutil.Process]:
    """Every PostgreSQL postmaster and Valkey server of this data folder."""
    found = []
    for proc in psutil.process_iter(["pid", "ppid", "cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if (
            "valkey-server" in cmdline
            and (data_dir / "valkey").exists()
            and _valkey_of(proc, data_dir)
        ) or ("postgres -D" in cmdline and str(data_dir) in cmdline):
            found.append(proc)
    return found


def _valkey_of(proc: psutil.Process, data_dir: Path) -> bool:
    with contextlib.suppress(psutil.Error):
        return proc.cwd().startswith(str(data_dir))
    return False


def _leave_servers_behind(data_dir: Path) -> list[int]:
    """What a killed `up` leaves on a platform without parent-death signals: a
    PostgreSQL and a Valkey running on the data folder, owned by nobody."""
    script = (
        "import sys; from pathlib import Path; import devtools.embedded as e\n"
        "e.die_with_parent = lambda *args: None  # no parent-death signal here\n"
        "d = Path(sys.argv[1]); pg, vk = e.EmbeddedPostgres(d), e.EmbeddedValkey(d)\n"
        "pg.start(); vk.start(); print(pg.process.pid, vk.process.pid)\n"
    )
    started = subprocess.run(
        [sys.executable, "-c", script, str(data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    pids = [int(pid) for pid in started.stdout.split()]
    assert all(psutil.pid_exists(pid) for pid in pids)
    return pids


@pytest.mark.timeout(900)
def test_up_stops_leftovers_restarts_dead_parts_and_serves_the_cli(up_dir: Path) -> None:
    """Issue 9 #10 and issue 8 "First run": leftovers from a killed `up` are stopped (one
    server per data folder), every part that dies comes back with backoff, and the CLI
    finds the running shop's database without DATABASE_URL. Two web replicas share the
    port: while one is down the other answers."""
    data_dir = up_dir
    leftovers = _leave_servers_behind(data_dir)

    with pizzeria_up(data_dir, web=2) as up:
        printed = _wait_for_stdout(up, "migrations", "web-2 ready", DEMO_CUSTOMER)
        assert "PostgreSQL (embedded)" in printed and "worker-status ready" in printed
        for pid in leftovers:
            assert (
                not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            ), f"leftover {pid} still running"
        servers = _embedded_servers(data_dir)
        assert len(servers) == 2, [" ".join(p.cmdline()) for p in servers]

        email = f"cli-{uuid.uuid4().hex[:10]}@example.com"
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "app.cli",
                "user",
                "create",
                "--email",
                email,
                "--password",
                PASSWORD,
                "--role",
                "staff",
            ],
            cwd=ROOT,
            env=_up_env(data_dir),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 0, cli.stdout + cli.stderr
        with httpx.Client(base_url=up.url, timeout=10) as client:
            _token(client, email, PASSWORD)

        serving = [(p, line) for p, line in _children(up.process.pid) if " serve " in line]
        web = [p for p, _ in serving]
        assert len(web) == 2, [line for _, line in serving]
        ports = re.findall(r"\bweb(?:-2)? :(\d+)", _wait_for_stdout(up, "metrics of each part"))
        assert len(ports) == 2, "each web replica's own metrics, the shared port's being either's"
        for _ in range(40):  # fresh connections: each replica serves some (all but surely)
            assert httpx.get(f"{up.url}/health/live", timeout=10).status_code == 200
        for metrics_port in ports:
            scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
            assert scraped.status_code == 200 and "pizzeria_http" in scraped.text
        web[0].kill()
        for _ in range(20):  # fresh connections, spread over the port's listeners
            with httpx.Client(base_url=up.url, timeout=10) as client:
                assert client.get("/health/live").status_code == 200
        _wait_until(
            lambda: any(f"{part} restarted" in "".join(up.stdout) for part in ("web", "web-2")),
            "the killed web replica restarted",
            up,
        )

        for name in ("worker coupon", "valkey-server", "postgres -D"):
            [victim] = [p for p, line in _children(up.process.pid) if name in line]
            victim.kill()
        _wait_until(
            lambda: all(
                f"{part} restarted" in "".join(up.stdout)
                for part in ("worker-coupon", "valkey", "postgres")
            ),
            "three restarts",
            up,
        )
        assert up.process.poll() is None, "up kept running"
        _wait_until(lambda: _ready(up.url), "the shop ready again", up)
        with httpx.Client(base_url=up.url, timeout=10) as client:
            _token_after_restart(client, email, PASSWORD, web_processes=default_web_replicas())
        up.descendants = psutil.Process(up.process.pid).children(recursive=True)


def _children(pid: int) -> list[tuple[psutil.Process, str]]:
    """Live children with their command lines, each read once: a part that just died may
    be a zombie until `up` reaps it, and one killed a moment ago may turn into one between
    two reads."""
    alive = []
    for child in psutil.Process(pid).children():
        with contextlib.suppress(psutil.Error):
            line = " ".join(child.cmdline())
            if child.status() != psutil.STATUS_ZOMBIE and line:
                alive.append((child, line))
    return alive


def _token_after_restart(
    client: httpx.Client, email: str, password: str, web_processes: int
) -> str:
    """A token as a client gets one right after PostgreSQL restarted: each web process's
    first statement finds its pooled connections dead (no pre-ping; the pool then retires
    them all) and answers 503 with Retry-After, which a client follows; the next works."""
    for _ in range(web_processes):
        response = client.post("/api/auth/token", data={"username": email, "password": password})
        if response.status_code != 503:
            assert response.status_code == 200, response.text
            token: str = response.json()["access_token"]
            return token
        retry_after = int(response.headers["retry-after"])
        assert retry_after > 0, response.headers
        time.sleep(min(retry_after, 1))
    return _token(client, email, password)


def _ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
    return False


@pytest.mark.parametrize(
    "command",
    [
        ["user", "create", "--email", "a@example.com", "--password", PASSWORD],
        ["events", "dead"],
        ["events", "retry", "1"],
        ["events", "discard", "1", "--reason", "not wanted"],
    ],
    ids=["user-create", "events-dead", "events-retry", "events-discard"],
)
def test_the_cli_says_clearly_when_nothing_is_running(tmp_path: Path, command: list[str]) -> None:
    cli = subprocess.run(
        [sys.executable, "-m", "app.cli", *command],
        cwd=ROOT,
        env=_up_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode != 0
    assert "nothing is running" in cli.stderr and "pizzeria up" in cli.stderr
    assert "Traceback" not in cli.stderr


def test_a_misspelt_replica_setting_stops_up_before_anything_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    up = subprocess.run(
        [sys.executable, "-m", "app.cli", "up", "--port", str(free_port())],
        cwd=ROOT,
        env=_up_env(data_dir, replicas="kitchen=2"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 1
    assert "PIZZERIA_WORKER_REPLICAS: 'kitchen=2'" in up.stdout and "payment" in up.stdout
    assert "Traceback" not in up.stdout + up.stderr
    assert not data_dir.exists(), "nothing started: no database, no data folder"


def test_up_warns_when_its_postgresql_cannot_take_the_pools(migrated_db: str) -> None:
    """Against a PostgreSQL of its own (``DATABASE_URL``) ``up`` reads max_connections:
    "too many clients" would only come in a rush, when every pool is full."""
    warning = connections_short(migrated_db, budget=100_000)
    assert warning is not None and "PIZZERIA_WEB_REPLICAS=1" in warning
    assert re.search(r"PostgreSQL allows \d+ connections", warning), warning
    assert connections_short(migrated_db, budget=5) is None


def test_up_refuses_a_port_another_shop_listens_on(tmp_path: Path) -> None:
    """The web processes share their port (``SO_REUSEPORT``), which any process of the
    same user may join: without the check a second shop would quietly take half of the
    first one's connections."""
    import socket

    data_dir = tmp_path / "data"
    with socket.socket() as shop:  # listening as a running shop's web does
        shop.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        shop.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        shop.bind(("127.0.0.1", 0))
        shop.listen()
        port = shop.getsockname()[1]
        up = subprocess.run(
            [sys.executable, "-m", "app.cli", "up", "--port", str(port)],
            cwd=ROOT,
            env=_up_env(data_dir),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert up.returncode == 1
    assert f"port {port} on 127.0.0.1 is taken" in up.stdout, up.stdout + up.stderr
    assert "Traceback" not in up.stdout + up.stderr
    assert not data_dir.exists(), "nothing started: no database, no data folder"


@pytest.mark.timeout(600)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_a_killed_up_takes_every_process_with_it(up_dir: Path) -> None:
    data_dir = up_dir
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "up", "--port", str(port)],
        cwd=ROOT,
        env=_up_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    up = Up(process=process, url=f"http://127.0.0.1:{port}", data_dir=data_dir)
    assert process.stdout is not None
    threading.Thread(target=_drain, args=(process.stdout, up.stdout), daemon=True).start()
    try:
        _wait_ready(up)
        up.descendants = psutil.Process(process.pid).children(recursive=True)
        assert len(_embedded_servers(data_dir)) == 2
    finally:
        process.kill()
        process.wait()
    _wait_until(lambda: not _leftovers(up), "every child gone", up, timeout=60)
