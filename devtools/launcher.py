"""``pizzeria up``: the whole shop in one command, for demos and development.

It starts embedded PostgreSQL/Valkey when no ``DATABASE_URL``/``REDIS_URL`` is set,
migrates, loads the demo menu and accounts, then runs every part as its own process
(web, relay, an arq worker per queue, sandbox partners) exactly as production would.
A queue can get more than one worker process (``PIZZERIA_WORKER_REPLICAS``,
"payment=2,status=1") on a machine with cores to spare. The relay and the workers run at
a lower CPU priority than the web (``PIZZERIA_BACKGROUND_NICE``): on one machine, the
customer waiting for an answer goes first, the work after the answer catches up.
It says what it is doing while it starts, and waits as long as the parts are making
progress. A part that dies is started again with backoff (embedded PostgreSQL and Valkey
too, on the same socket/port and data folder, so the others reconnect); Ctrl-C or
SIGTERM stops them all cleanly, and if ``up`` itself is killed its children follow it
(Linux) or are stopped by the next ``up`` on the same data folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
import psutil

from app.accounts.models import Role
from app.cli import load_demo_data, run_migrations
from app.platform import priority
from devtools.embedded import (
    UP_PID_FILE,
    EmbeddedPostgres,
    EmbeddedValkey,
    die_with_parent,
    free_port,
    running_up,
)
from workers import QUEUES

DEMO_PASSWORD = "pizza-demo-1234"
DEMO_ACCOUNTS = (
    ("customer@pizzeria.test", "Demo Customer", Role.customer),
    ("staff@pizzeria.test", "Demo Staff", Role.staff),
)
#: restart backoff: first wait, ceiling, and how long a part must run to count as healthy
BACKOFF_FIRST, BACKOFF_MAX, HEALTHY_AFTER = 1.0, 30.0, 30.0
#: while starting, give up on a part only when it has used no CPU for this long
STALL_SECONDS = 90.0


def say(message: str) -> None:
    print(f"pizzeria: {message}", flush=True)


# -- supervised parts -----------------------------------------------------------------


@dataclass
class Part:
    """One process of the shop, started again with backoff whenever it dies."""

    name: str
    launch: Callable[[], subprocess.Popen[bytes]]
    #: the queue a worker part takes jobs from (its replicas share it)
    queue: str | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_FIRST
    restart_at: float | None = None

    def start(self) -> None:
        self.process = self.launch()
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def watch(self, now: float) -> None:
        """Notice a death and schedule the restart; restart when its time has come."""
        if self.restart_at is None and self.process is not None and not self.alive():
            if now - self.started_at >= HEALTHY_AFTER:
                self.backoff = BACKOFF_FIRST  # it had been running fine: start afresh
            say(
                f"{self.name} exited with {self.process.returncode}; "
                f"restarting in {self.backoff:.0f} s"
            )
            self.restart_at = now + self.backoff
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        if self.restart_at is not None and now >= self.restart_at:
            self.restarts += 1
            try:
                self.start()
                say(f"{self.name} restarted (restart {self.restarts}, pid {self.pid})")
            except Exception as exc:  # e.g. PostgreSQL cannot start yet: try again later
                say(f"{self.name} could not restart: {exc}; next try in {self.backoff:.0f} s")
                self.restart_at = now + self.backoff
                self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    def stop(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)


def _spawn(args: list[str], env: dict[str, str], nice: int = 0) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "app.cli", *args]

    def setup() -> None:
        die_with_parent()
        # each part a scheduling group of its own (``app.platform.priority``)
        priority.start_own_group(nice)

    return subprocess.Popen(command, env=env, preexec_fn=setup)


def command_part(
    name: str,
    args: list[str],
    env: dict[str, str],
    queue: str | None = None,
    nice: int = 0,
    more: Callable[[], list[str]] = list,
) -> Part:
    """A part running ``pizzeria <args>``; ``more`` adds arguments decided at each start."""
    return Part(name, lambda: _spawn([*args, *more()], env, nice), queue=queue)


def embedded_part(service: EmbeddedPostgres | EmbeddedValkey) -> Part:
    """An embedded server as a part: a restart reuses its data folder and address."""

    def launch() -> subprocess.Popen[bytes]:
        service.start()
        assert service.process is not None
        return service.process

    part = Part(service.name, launch)
    part.process, part.started_at = service.process, time.monotonic()
    return part


# -- start-up -------------------------------------------------------------------------


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

    timed("migrations", run_migrations)
    label = "demo menu and accounts" if demo else "demo menu"
    accounts = DEMO_ACCOUNTS if demo else ()
    timed(label, lambda: asyncio.run(load_demo_data(accounts, DEMO_PASSWORD)))


def connection_budget(web: int, workers: int) -> int:
    """The most PostgreSQL connections the shop's pools may hold at once: each process's
    pool at its full size (``app.platform.db.create_engine``: twice the configured size),
    and the relay's listener."""
    from app.platform.db import RELAY_POOL_SIZE, pool_capacity
    from app.platform.settings import get_settings

    settings = get_settings()
    pools = web * settings.db.pool_size + RELAY_POOL_SIZE + workers * settings.worker.db_pool
    return pool_capacity(pools) + 1


def connections_short(database_url: str, budget: int) -> str | None:
    """What to say when the PostgreSQL at ``database_url`` allows fewer connections than
    the pools may take (``None`` when it has room): a stock server's 100 is about what two
    web processes and the workers come to, and the refusals ("too many clients") would
    come only in a rush, when every pool is full."""
    import asyncpg

    from app.platform.db import asyncpg_dsn

    async def allowed() -> int:
        connection = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            return int(await connection.fetchval("SHOW max_connections"))
        finally:
            await connection.close()

    limit = asyncio.run(allowed())
    if limit >= budget:
        return None
    return (
        f"PostgreSQL allows {limit} connections and the shop's pools may open {budget} in a "
        "rush: raise its max_connections, set PIZZERIA_WEB_REPLICAS=1, or pool through "
        "PgBouncer (DATABASE_POOLING=transaction)"
    )


def _check_connections(web: int, workers: int) -> None:
    """Warn when the given PostgreSQL cannot take the pools (behind PgBouncer's
    transaction pooling they hold cheap client connections: nothing to check)."""
    from app.platform.settings import get_settings

    db = get_settings().db
    if db.pooling != "transaction" and (
        warning := connections_short(db.url, connection_budget(web, workers))
    ):
        say(warning)


def timed(label: str, step: Callable[[], object]) -> None:
    print(f"pizzeria: {label} …", end=" ", flush=True)
    began = time.monotonic()
    step()
    print(f"done in {time.monotonic() - began:.1f} s", flush=True)


@dataclass
class Embedded:
    """The embedded servers this ``up`` runs (none when URLs are given)."""

    data_dir: Path
    postgres: EmbeddedPostgres | None = None
    valkey: EmbeddedValkey | None = None
    parts: list[Part] = field(default_factory=list)

    def start(self) -> None:
        if self.postgres:
            url = _start_timed("PostgreSQL (embedded)", self.postgres.start)
            os.environ["DATABASE_URL"] = url
            self.parts.append(embedded_part(self.postgres))
        if self.valkey:
            os.environ["REDIS_URL"] = _start_timed("Valkey (embedded)", self.valkey.start)
            self.parts.append(embedded_part(self.valkey))

    def stop(self) -> None:
        if self.valkey:
            self.valkey.stop()
        if self.postgres:
            self.postgres.stop()


def _start_timed(label: str, start: Callable[[], str]) -> str:
    result: list[str] = []
    timed(label, lambda: result.append(start()))
    return result[0]


def require_free_port(host: str, port: int) -> None:
    """Refuse a port something already listens on. The web processes share their port
    (``SO_REUSEPORT``), and Linux lets any process of the same user join such a port: a
    second shop started on it would not fail, it would quietly take half of the first
    one's connections, with other secrets and another database."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            probe.bind(address)
        except OSError as exc:
            raise RuntimeError(
                f"port {port} on {host} is taken ({exc.strerror}): another shop or program "
                "listens there; choose another with --port"
            ) from exc


def _claim_data_dir(data_dir: Path) -> None:
    """One ``up`` per data folder; a dead one's pid file is simply taken over."""
    data_dir.mkdir(parents=True, exist_ok=True)
    other = running_up(data_dir)
    if other is not None:
        raise RuntimeError(f"another `pizzeria up` (pid {other}) is running on {data_dir}")
    (data_dir / UP_PID_FILE).write_text(f"{os.getpid()}\n")


def _release_data_dir(data_dir: Path) -> None:
    pid_file = data_dir / UP_PID_FILE
    with contextlib.suppress(OSError, ValueError):
        if int(pid_file.read_text().split()[0]) == os.getpid():
            pid_file.unlink()


def configure_partners(host: str, port: int) -> int:
    """Point the shop at its sandbox partners and the partners back at the shop."""
    sandbox_port = free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    os.environ["PAYMENT_PROVIDER_URL"] = sandbox_url
    os.environ["COURIER_PARTNER_URL"] = sandbox_url
    public_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    os.environ.setdefault("PUBLIC_URL", f"http://{public_host}:{port}")
    return sandbox_port


def worker_replicas(spec: str | None) -> dict[str, int]:
    """Worker processes per queue: one, except where ``spec`` ("payment=2,status=1", from
    ``PIZZERIA_WORKER_REPLICAS``) says otherwise. One is the default on purpose: on two
    cores a second payment worker cost more than it gave (CPU per order 38 -> 48 ms,
    orders paid per second 42 -> 34: fewer jobs per wake-up, and the web starved of CPU;
    ``benchmarks/perf12-*``); on a bigger machine, raise it."""
    replicas = dict.fromkeys(QUEUES, 1)
    for item in filter(None, (spec or "").replace(" ", "").split(",")):
        queue, _, count = item.partition("=")
        if queue not in replicas or not count.isdigit() or int(count) < 1:
            raise RuntimeError(
                f"PIZZERIA_WORKER_REPLICAS: {item!r} is not QUEUE=N with N >= 1 "
                f"(queues: {', '.join(QUEUES)})"
            )
        replicas[queue] = int(count)
    return replicas


#: how much lower the relay's and the workers' CPU priority is than the web's (Unix
#: niceness, and their scheduling groups' too: ``app.platform.priority``). They only
#: compete when the cores are full, and then an answer owed to a customer matters more
#: than a payment that can follow a few seconds later: in a rush on two cores the web
#: placed 20-30 % more orders a second, and as many were paid a second overall
#: (``benchmarks/perf18-nice*``); with each part a group of its own and the background
#: parts' backends niced too, 22 % more again, and more paid a second as well
#: (``benchmarks/perf30-groups*``). Nothing changes while a core is idle. 0 turns it off.
BACKGROUND_NICE = 10


def background_nice(value: str | None) -> int:
    """The niceness of the background parts, from ``PIZZERIA_BACKGROUND_NICE``."""
    if value is None or not value.strip():
        return BACKGROUND_NICE
    if not re.fullmatch(r"1?[0-9]", value.strip()):
        raise RuntimeError(f"PIZZERIA_BACKGROUND_NICE: {value!r} is not a niceness from 0 to 19")
    return int(value)


#: the fewest web processes (``shop_parts``' default); more than one share the port
#: (``serve --reuse-port``), and ``up`` starts one per CPU (``default_web_replicas``)
WEB_REPLICAS = 1
#: the most web processes ``up`` starts by itself: one per CPU up to this many
MAX_DEFAULT_WEB_REPLICAS = 2


def default_web_replicas(cpus: int | None = None) -> int:
    """One web process per CPU this process may run on, at most two. One web process uses
    at most one core, and in a rush it is the part that runs out: with two on two cores
    the web placed about a quarter more orders a second with the workers running, and as
    many were paid a second (``benchmarks/perf31-*``). Round 28 measured the opposite
    (the second web took the payment worker's CPU); since round 30 the background parts
    yield as their niceness says (``app.platform.priority``), and the second web takes
    only what the web itself was owed. A bigger machine sets ``PIZZERIA_WEB_REPLICAS``:
    past two, the workers and PostgreSQL want the cores more. The CPUs are those of the
    affinity mask (``taskset``, a container's cpuset); a CPU quota (``docker --cpus``) is
    not seen, so a container limited that way sets ``PIZZERIA_WEB_REPLICAS`` too."""
    if cpus is None:
        affinity = getattr(os, "sched_getaffinity", None)
        cpus = len(affinity(0)) if affinity else os.cpu_count() or 1
    return min(MAX_DEFAULT_WEB_REPLICAS, cpus)


def web_replicas(value: str | None, cpus: int | None = None) -> int:
    """How many web processes, from ``PIZZERIA_WEB_REPLICAS``, else one per CPU (at most
    two, ``default_web_replicas``)."""
    if value is None or not value.strip():
        return default_web_replicas(cpus)
    if not re.fullmatch(r"[0-9]{1,2}", value.strip()) or not 1 <= int(value) <= 16:
        raise RuntimeError(f"PIZZERIA_WEB_REPLICAS: {value!r} is not a number from 1 to 16")
    return int(value)


def replica_names(base: str, count: int) -> list[str]:
    """``base``, then ``base-2`` and on: the processes of a part that runs several."""
    return [base if n == 1 else f"{base}-{n}" for n in range(1, count + 1)]


def worker_part_names(replicas: dict[str, int]) -> list[tuple[str, str]]:
    """(part name, queue) of every worker process: ``worker-payment``, then
    ``worker-payment-2`` and on for a queue's further replicas."""
    return [
        (name, queue)
        for queue, count in replicas.items()
        for name in replica_names(f"worker-{queue}", count)
    ]


def metrics_flag(ports: dict[str, int], part: str) -> list[str]:
    """``part``'s metrics port flag, asked at each of its starts. ``free_port``'s pick is
    only free when picked: a port another process took since (a test's server, another
    shop's part) is swapped for a free one, in ``ports`` too, or the part would die on
    it at every restart and never be ready."""
    if part not in ports:
        return []
    if not _can_listen(ports[part]):
        taken, ports[part] = ports[part], free_port()
        say(f"{part}: metrics port {taken} is taken; it uses {ports[part]} now")
    return ["--metrics-port", str(ports[part])]


def _can_listen(port: int) -> bool:
    """Could a part's metrics server (on every address, ``SO_REUSEADDR``) bind ``port``?"""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def shop_parts(
    host: str,
    port: int,
    sandbox_port: int,
    env: dict[str, str],
    metrics_ports: dict[str, int] | None = None,
    replicas: dict[str, int] | None = None,
    nice: int = BACKGROUND_NICE,
    web: int = WEB_REPLICAS,
) -> list[Part]:
    """Every process of the shop; ``metrics_ports`` gives the relay (``relay``), each
    worker (``worker-<queue>``, ``worker-<queue>-2``...) and each of several web replicas
    (``web``, ``web-2``...: the shared port's /metrics answers from whichever takes the
    connection) its metrics port. The relay and the workers run ``nice`` steps below the
    web and the sandbox (the partners' own machines)."""
    ports = metrics_ports if metrics_ports is not None else {}

    def metrics(part: str) -> Callable[[], list[str]]:
        return lambda: metrics_flag(ports, part)

    workers = worker_part_names(replicas or worker_replicas(None))
    serve = ["serve", "--host", host, "--port", str(port), *(["--reuse-port"] if web > 1 else [])]
    return [
        command_part("sandbox", ["sandbox", "--port", str(sandbox_port)], env),
        command_part("relay", ["relay"], env, nice=nice, more=metrics("relay")),
        *(
            command_part(name, ["worker", q], env, q, nice=nice, more=metrics(name))
            for name, q in workers
        ),
        *(command_part(name, serve, env, more=metrics(name)) for name in replica_names("web", web)),
    ]


def up(host: str, port: int) -> int:
    data_dir = Path(os.environ.get("PIZZERIA_DATA_DIR", ".pizzeria")).resolve()
    embedded = Embedded(
        data_dir,
        EmbeddedPostgres(data_dir) if not os.environ.get("DATABASE_URL") else None,
        EmbeddedValkey(data_dir) if not os.environ.get("REDIS_URL") else None,
    )
    parts: list[Part] = []
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        # a misspelt setting stops it before anything starts
        replicas = worker_replicas(os.environ.get("PIZZERIA_WORKER_REPLICAS"))
        nice = background_nice(os.environ.get("PIZZERIA_BACKGROUND_NICE"))
        web = web_replicas(os.environ.get("PIZZERIA_WEB_REPLICAS"))
        require_free_port(host, port)
        _claim_data_dir(data_dir)
        ensure_secrets(data_dir)
        embedded.start()
        sandbox_port = configure_partners(host, port)
        demo = embedded.postgres is not None or os.environ.get(
            "PIZZERIA_DEMO", ""
        ).strip().lower() in {"1", "true", "yes", "on"}
        prepare_data(demo)
        workers = [name for name, _ in worker_part_names(replicas)]
        if embedded.postgres is None:  # the embedded one takes MAX_CONNECTIONS
            _check_connections(web, len(workers))
        webs = replica_names("web", web) if web > 1 else []
        metrics_ports = {part: free_port() for part in (*webs, "relay", *workers)}
        parts = shop_parts(
            host, port, sandbox_port, dict(os.environ), metrics_ports, replicas, nice, web
        )
        say("starting " + ", ".join(part.name for part in parts))
        for part in parts:
            part.start()
        everything = [*embedded.parts, *parts]
        readiness = Readiness(host, port, sandbox_port, parts)
        if not readiness.wait(everything, lambda: stopping):
            return 0 if stopping else 1
        _announce(host, port, demo, data_dir if embedded.postgres or embedded.valkey else None)
        _announce_metrics(host, port, metrics_ports)
        while not stopping:
            now = time.monotonic()
            for part in everything:
                part.watch(now)
            time.sleep(0.2)
        return 0
    except RuntimeError as exc:
        say(f"{exc}; stopping")
        return 1
    finally:
        _stop_parts(parts)
        embedded.stop()
        _release_data_dir(data_dir)
        say("stopped")


# -- readiness ------------------------------------------------------------------------


@dataclass
class Readiness:
    """Which parts are ready, from their own signals: HTTP health for the web server and
    the sandbox, arq's health-check key in Redis for each worker's queue (which a
    queue's replicas share: the queue is served once one of them polls), alive for the
    relay."""

    host: str
    port: int
    sandbox_port: int
    parts: list[Part]
    ready: set[str] = field(default_factory=set)
    cpu: dict[str, tuple[float, float]] = field(default_factory=dict)

    def wait(self, everything: list[Part], stopping: Callable[[], bool]) -> bool:
        """Until every part is ready (True), Ctrl-C (False), or a part stops making
        progress (no CPU used for ``STALL_SECONDS`` without being ready: False). Parts
        that die meanwhile are restarted as usual."""
        began = last_report = time.monotonic()
        while not stopping():
            now = time.monotonic()
            for part in everything:
                part.watch(now)
            for part in self.parts:
                if part.name not in self.ready and part.alive() and self._ready(part):
                    self.ready.add(part.name)
                    say(f"{part.name} ready ({now - began:.1f} s)")
            waiting = [p for p in self.parts if p.name not in self.ready]
            if not waiting:
                return True
            if stalled := [p.name for p in waiting if self._stalled(p, now)]:
                say(f"{', '.join(stalled)} made no progress for {STALL_SECONDS:.0f} s")
                return False
            if now - last_report >= 10:
                names = ", ".join(p.name for p in waiting)
                say(f"still starting after {now - began:.0f} s: {names}")
                last_report = now
            time.sleep(0.2)
        return False

    def _ready(self, part: Part) -> bool:
        if part.name == "web" or part.name.startswith("web-"):
            # replicas share the port: the health answer may come from another one, so
            # each must also listen itself (uvicorn listens once the app has started)
            return _listening(part.pid, self.port) and _http_ok(
                f"http://{self._web_host()}:{self.port}/health/ready"
            )
        if part.name == "sandbox":
            return _http_ok(f"http://127.0.0.1:{self.sandbox_port}/health")
        if part.queue is not None:
            return _worker_alive(part.queue)
        return time.monotonic() - part.started_at >= 2.0  # the relay: still alive

    def _web_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host

    def _stalled(self, part: Part, now: float) -> bool:
        """No CPU used since the last change for ``STALL_SECONDS`` (a busy machine is
        slow, not stuck; a part waiting forever on something is stuck)."""
        used = _cpu_seconds(part.pid)
        seen_used, seen_at = self.cpu.get(part.name, (-1.0, now))
        if used != seen_used:
            self.cpu[part.name] = (used, now)
            return False
        return now - seen_at >= STALL_SECONDS


def _listening(pid: int | None, port: int) -> bool:
    """Whether process ``pid`` listens on TCP ``port``."""
    if pid is None:
        return False
    with contextlib.suppress(psutil.Error):
        return any(
            conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
            for conn in psutil.Process(pid).net_connections(kind="tcp")
        )
    return False


def _http_ok(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=1).status_code == 200
    return False


def _worker_alive(queue: str) -> bool:
    """arq writes ``<queue>:health-check`` once its worker is up and polling."""
    import redis

    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=1)
        try:
            return bool(client.exists(f"{queue}:health-check"))
        finally:
            client.close()  # type: ignore[no-untyped-call]
    return False


def _cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    with contextlib.suppress(psutil.Error):
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    return 0.0


def _announce(host: str, port: int, demo: bool, data_dir: Path | None) -> None:
    lines = [f"pizzeria: the shop is open at http://{host}:{port}/"]
    if data_dir:
        lines.append(f"pizzeria: embedded PostgreSQL and Valkey keep their data in {data_dir}")
    if demo:
        for email, _, role in DEMO_ACCOUNTS:
            lines.append(f"pizzeria: demo {role.value}: {email} / {DEMO_PASSWORD}")
    lines.append("pizzeria: press Ctrl-C to stop")
    print("\n".join(lines), flush=True)


def _announce_metrics(host: str, port: int, metrics_ports: dict[str, int]) -> None:
    """Where Prometheus finds each part: the web's /metrics has the shop-wide gauges."""
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    lines = [
        f"pizzeria: metrics (Prometheus) of the web and the whole shop at http://{local}:{port}/metrics"
    ]
    if "web-2" in metrics_ports:
        lines[0] += " (the HTTP figures of whichever web process answers: each one's own below)"
    parts = ", ".join(f"{part} :{p}" for part, p in metrics_ports.items())
    lines.append(f"pizzeria: metrics of each part at http://127.0.0.1:<port>/metrics: {parts}")
    print("\n".join(lines), flush=True)


def _stop_parts(parts: list[Part], timeout: float = 15.0) -> None:
    """SIGTERM everyone (web first drains, workers finish their jobs), then SIGKILL stragglers."""
    for part in reversed(parts):
        part.stop()
    deadline = time.monotonic() + timeout
    for part in parts:
        if part.process is None:
            continue
        remaining = max(0.1, deadline - time.monotonic())
        try:
            part.process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            part.process.kill()
