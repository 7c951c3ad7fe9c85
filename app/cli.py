"""The ``pizzeria`` command: run the whole shop, or any one part of it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.accounts.models import Role

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


#: commands that start their own servers or need none
_SELF_CONTAINED = frozenset({"up", "sandbox", "bench"})
#: how to find a running ``pizzeria up`` to talk to when no URLs are set (the development
#: tools add it; it returns the data folder when nothing runs there)
LOCATE_SHOP: list[Callable[[], Path | None]] = []


def _require_secrets() -> None:
    """Stop here, naming the variable, when a secret is missing or guessable."""
    from app.platform.settings import InsecureSettings, get_settings, require_secrets

    try:
        require_secrets(get_settings())
    except InsecureSettings as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Pizzeria: ordering, delivery and refunds for a pizza shop."""
    if ctx.invoked_subcommand not in _SELF_CONTAINED:
        # the running shop first: it may give the URLs the settings are read with
        ctx.obj = {"idle_data_dir": LOCATE_SHOP[0]() if LOCATE_SHOP else None}
        if "--help" not in sys.argv[1:]:
            _check_settings()


def _check_settings() -> None:
    """Read the settings once, up front: a value the process cannot run with stops it
    here with one line naming the variable, not with a traceback from wherever it is
    first used (or, worse, a start that fails every request later)."""
    from app.platform.settings import Settings

    try:
        Settings()  # not get_settings(): nothing is cached from this early look
    except ValueError as exc:  # BadSetting, and the checks that raise ValueError
        raise click.ClickException(f"refusing to start: {exc}") from exc


def require_database() -> None:
    """No ``DATABASE_URL`` and no ``pizzeria up`` running on the data folder: say so
    plainly instead of failing on a connection to a server that is not there."""
    ctx = click.get_current_context()
    idle = (ctx.find_root().obj or {}).get("idle_data_dir")
    if idle is not None:
        raise click.ClickException(
            f"no database: nothing is running on {idle}. Start the shop with "
            "`pizzeria up` (same PIZZERIA_DATA_DIR), or set DATABASE_URL."
        )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="uvicorn processes")
@click.option(
    "--reuse-port",
    is_flag=True,
    help="share the port with other `serve` processes (SO_REUSEPORT: the kernel spreads "
    "connections over them)",
)
@click.option(
    "--metrics-port",
    type=int,
    default=0,
    help="also serve this process's metrics on this port (web replicas sharing a port: "
    "their /metrics answers from whichever process takes the connection)",
)
def serve(host: str, port: int, workers: int, reuse_port: bool, metrics_port: int) -> None:
    """Run the web server (HTML pages and the JSON API).

    SIGTERM drains it: unready at once, closes after SHUTDOWN_DRAIN_SECONDS, finishes
    requests in flight within SHUTDOWN_GRACE_SECONDS (see app.platform.lifecycle)."""
    if workers > 1 and (reuse_port or metrics_port):
        raise click.UsageError("--reuse-port and --metrics-port are for one process each")
    import uvicorn

    from app.platform import metrics
    from app.platform.lifecycle import GracefulServer
    from app.platform.settings import get_settings

    _require_secrets()
    settings = get_settings()
    metrics.serve_metrics(metrics_port, settings.observability.metrics_token)
    lifecycle = settings.lifecycle
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        # X-Forwarded-For is read by the app itself, from FORWARDED_ALLOW_IPS peers only
        "proxy_headers": False,
        "log_level": "warning",
        "log_config": None,  # app.platform.logs configures logging (create_app)
        "timeout_graceful_shutdown": round(lifecycle.grace_seconds),
        "timeout_keep_alive": lifecycle.keep_alive_seconds,
    }
    if workers > 1:  # uvicorn's own supervisor, without the drain period: prefer replicas
        uvicorn.run("app.main:create_app", workers=workers, **options)
        return
    config = uvicorn.Config("app.main:create_app", **options)
    server = GracefulServer(config, drain_seconds=lifecycle.drain_seconds)
    server.run(sockets=[_shared_socket(host, port)] if reuse_port else None)


def _shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket other processes may bind too: each replica keeps its own
    drain (``GracefulServer``), which uvicorn's ``--workers`` supervisor has not."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


METRICS_PORT_HELP = "serve Prometheus metrics on this port (default: METRICS_PORT; 0: none)"


def _observe(part: str, metrics_port: int | None) -> None:
    """Logging for ``part`` and its metrics port: flag, else ``METRICS_PORT``."""
    from app.platform import logs, metrics
    from app.platform.settings import get_settings

    settings = get_settings()
    logs.configure_logging(part, settings)
    port = settings.observability.metrics_port if metrics_port is None else metrics_port
    metrics.serve_metrics(port, settings.observability.metrics_token)


@main.command()
@click.argument("queue")
@click.option("--metrics-port", type=int, default=None, help=METRICS_PORT_HELP)
def worker(queue: str, metrics_port: int | None) -> None:
    """Run the arq worker for QUEUE (payment, ordering, delivery, coupon, refund, status);
    it survives Redis restarts. SIGTERM: no new job, the running ones finish, exit 0."""
    from app.platform.lifecycle import hold_stop_signals

    hold_stop_signals()  # a SIGTERM while importing stops it cleanly, not with -15
    require_database()
    from workers import QUEUES, settings_for
    from workers.supervised import run

    if queue not in QUEUES:
        raise click.BadParameter(f"choose one of {', '.join(QUEUES)}", param_hint="QUEUE")
    _require_secrets()
    _observe(f"worker-{queue}", metrics_port)
    from app.platform.loop import use_fast_event_loop

    use_fast_event_loop()
    run(settings_for(queue))


@main.command()
@click.option("--metrics-port", type=int, default=None, help=METRICS_PORT_HELP)
def relay(metrics_port: int | None) -> None:
    """Run the outbox relay (safe to run several). SIGTERM stops it between two batches."""
    from app.platform.lifecycle import hold_stop_signals

    hold_stop_signals()  # a SIGTERM while importing or connecting stops it cleanly
    require_database()
    _require_secrets()
    _observe("relay", metrics_port)
    from app.platform.loop import use_fast_event_loop

    use_fast_event_loop()
    asyncio.run(_relay())


async def _relay() -> None:
    """The relay and the reconciler side by side in one process, each safe to replicate."""
    from app.platform import lifecycle, liveness
    from app.platform.db import (
        RELAY_POOL_SIZE,
        asyncpg_dsn,
        create_engine,
        create_session_factory,
    )
    from app.platform.heartbeat import Heartbeat
    from app.platform.loop import freeze_startup_heap
    from app.platform.reconciler import run_reconciler
    from app.platform.redis import create_job_pool, redis_bound
    from app.platform.relay import run_relay
    from app.platform.settings import get_settings
    from app.subscriptions import SUBSCRIPTIONS

    settings = get_settings()
    redis_within = redis_bound(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)  # the relay stops between two batches
    if lifecycle.early_stop() is not None:  # signalled while importing
        return
    engine = create_engine(settings, pool_size=RELAY_POOL_SIZE)
    session_factory = create_session_factory(engine)
    heartbeat = Heartbeat(session_factory, "relay", settings.pipeline.heartbeat_seconds)
    beating = asyncio.create_task(heartbeat.run())
    alive = liveness.start(settings.lifecycle.liveness_file)  # the pod's liveness probe
    jobs = None
    try:
        # waiting for Redis at start-up must not outlive a SIGTERM either
        jobs = await _unless_stopped(create_job_pool(settings, retries=1_000_000), stop)
        if jobs is None:
            return
        freeze_startup_heap()
        await asyncio.gather(
            run_relay(
                session_factory,
                jobs,
                SUBSCRIPTIONS,
                asyncpg_dsn(settings.db.direct_url),  # LISTEN needs a session of its own
                stop,
                linger=settings.worker.relay_linger,
                heartbeat=heartbeat,
                follow_up_after=settings.pipeline.follow_up_seconds,
                redis_within=redis_within,
            ),
            run_reconciler(
                session_factory,
                jobs,
                SUBSCRIPTIONS,
                stop,
                every=settings.pipeline.reconcile_seconds,
                redeliver_after=settings.pipeline.redeliver_seconds,
                follow_up_after=settings.pipeline.follow_up_seconds,
                heartbeat=heartbeat,
                redis_within=redis_within,
            ),
        )
    finally:
        beating.cancel()
        await liveness.stop(alive)
        await heartbeat.remove()
        if jobs is not None:
            await jobs.aclose()
        await engine.dispose()


async def _unless_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """``work``'s result, or None when ``stop`` is set first (``work`` is cancelled)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


@main.command()
@click.option("--check", is_flag=True, help="apply nothing: exit 1 unless the schema is at head")
@click.option("--wait", default=0.0, type=float, help="with --check: wait up to this many seconds")
def migrate(check: bool, wait: float) -> None:
    """Apply database migrations (or, with --check, only see whether they were applied:
    a pod's init container waits so that a release never runs on last release's schema)."""
    require_database()
    if not check:
        run_migrations()
        click.echo("migrations applied")
        return
    deadline = time.monotonic() + wait
    head = _head_revisions()
    while True:
        try:
            current = asyncio.run(_schema_revisions())
            unreachable = None
        except SchemaUnreachable as exc:
            current, unreachable = set(), exc
        if current == head:
            break
        if time.monotonic() >= deadline:
            # a database not reached is not a database not migrated: say which it is
            raise click.ClickException(
                f"cannot read the schema: {unreachable}"
                if unreachable
                else f"schema at {current or 'nothing'}, this release needs {head}"
            )
        time.sleep(2)
    click.echo(f"schema at head {sorted(head)}")


class SchemaUnreachable(Exception):
    """The database could not be reached (or refused us) to read its schema version."""


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    return config


def run_migrations() -> None:
    from alembic import command

    command.upgrade(_alembic_config(), "head")


def _head_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(_alembic_config()).get_heads())


async def _schema_revisions() -> set[str]:
    """The revisions the database is at (empty when never migrated);
    ``SchemaUnreachable`` when the database cannot be reached or refuses us."""
    import asyncpg

    from app.platform.db import asyncpg_dsn
    from app.platform.settings import get_settings

    try:
        conn = await asyncpg.connect(asyncpg_dsn(get_settings().db.direct_url), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise SchemaUnreachable(f"{type(exc).__name__}: {exc}") from exc
    try:  # alembic/env.py keeps the version table in public (it adopts a legacy platform one)
        rows = await conn.fetch("SELECT version_num FROM public.alembic_version")
    except asyncpg.PostgresError:  # no schema or table yet
        return set()
    finally:
        await conn.close()
    return {row["version_num"] for row in rows}


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8100, show_default=True, type=int)
def sandbox(host: str, port: int) -> None:
    """Run the sandbox payment provider and delivery partner."""
    import uvicorn

    from app.platform.logs import configure_logging

    configure_logging("sandbox")
    uvicorn.run(
        "app.sandbox.app:create_sandbox_app",
        factory=True,
        host=host,
        port=port,
        log_level="warning",
        log_config=None,  # configured above
    )


@main.group()
def user() -> None:
    """Manage accounts."""


@user.command("create")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--name", default=None)
@click.option("--role", type=click.Choice(["customer", "staff", "admin"]), default="customer")
def create_user(email: str, password: str, name: str | None, role: str) -> None:
    """Create an account with a role."""
    require_database()
    from app.accounts.models import Role
    from app.accounts.service import sign_up
    from app.platform.db import create_engine, create_session_factory
    from app.platform.errors import DomainError
    from app.platform.settings import get_settings

    async def create() -> None:
        engine = create_engine(get_settings())
        try:
            async with create_session_factory(engine)() as session:
                created = await sign_up(
                    session, email=email, password=password, name=name or email, role=Role(role)
                )
                click.echo(f"created {created.role} {created.email} ({created.id})")
        finally:
            await engine.dispose()

    try:
        asyncio.run(create())
    except DomainError as exc:
        raise click.ClickException(exc.detail) from exc


@main.group()
def events() -> None:
    """The event pipeline: dead letters, their retry, or giving them up."""


@events.command("dead")
@click.option("--all", "show_all", is_flag=True, help="include dead letters already retried")
def dead_letters(show_all: bool) -> None:
    """List the jobs parked as dead letters (newest first)."""
    from sqlalchemy import select

    from app.platform import deadletters
    from app.platform.outbox import DeadLetter

    async def show() -> None:
        async with _session() as session:
            if show_all:
                query = select(DeadLetter).order_by(DeadLetter.failed_at.desc()).limit(500)
                letters = list(await session.scalars(query))
            else:
                letters = await deadletters.active(session)
        if not letters:
            click.echo("no dead letters")
        for letter in letters:
            settled = ""  # a letter is retried or discarded, never both
            if letter.retried_at:
                settled = f"  retried {letter.retried_at:%Y-%m-%d %H:%M:%S}"
            elif letter.discarded_at:
                settled = (
                    f"  discarded {letter.discarded_at:%Y-%m-%d %H:%M:%S}: {letter.discard_reason}"
                )
            click.echo(
                f"{letter.id}\t{letter.failed_at:%Y-%m-%d %H:%M:%S}\t{letter.handler}\t"
                f"{letter.event_type} {letter.event_id}\t"
                f"order {letter.event.get('correlation_id', '?')}\t"
                f"{letter.error_type.rsplit('.', 1)[-1]}: {letter.error}"
                f"  ({letter.attempts} tries, {letter.failures} failures){settled}"
            )

    asyncio.run(show())


@events.command("retry")
@click.argument("letter_id", type=int)
def retry_dead_letter(letter_id: int) -> None:
    """Send dead letter ID again (after fixing its cause)."""
    from app.platform import deadletters
    from app.platform.errors import DomainError
    from app.platform.redis import create_job_pool
    from app.platform.settings import get_settings

    require_database()  # before Redis is asked for anything

    async def retry() -> str:
        jobs = await create_job_pool(get_settings(), retries=3)
        try:
            async with _session() as session:
                letter = await deadletters.retry(session, jobs, letter_id, "the command line")
                return (
                    f"dead letter {letter.id}: {letter.handler} for {letter.event_type} sent again"
                )
        finally:
            await jobs.aclose()

    try:
        click.echo(asyncio.run(retry()))
    except DomainError as exc:
        raise click.ClickException(exc.detail) from exc


@events.command("discard")
@click.argument("letter_id", type=int)
@click.option("--reason", required=True, help="why the job is discarded (kept with it)")
def discard_dead_letter(letter_id: int, reason: str) -> None:
    """Give dead letter ID up for good: its event counts as handled by its handler. For a
    job whose effect is no longer wanted; fix and retry one that is."""
    from app.platform import deadletters
    from app.platform.errors import DomainError, InvalidInput

    async def discard() -> str:
        async with _session() as session:
            letter = await deadletters.discard(session, letter_id, reason, "the command line")
            return f"dead letter {letter.id}: {letter.handler} for {letter.event_type} discarded"

    try:
        click.echo(asyncio.run(discard()))
    except InvalidInput as exc:
        raise click.BadParameter(str(exc.errors[0].message), param_hint="--reason") from exc
    except DomainError as exc:
        raise click.ClickException(exc.detail) from exc


@contextlib.asynccontextmanager
async def _session() -> AsyncIterator[AsyncSession]:
    """A session for one command. Every command that opens one is refused first when
    nothing is running on the data folder: the events commands used to connect to the
    default database instead (a mistyped folder could retry or discard dead letters of
    whichever shop answered on 127.0.0.1:5432)."""
    from app.platform.db import create_engine, create_session_factory
    from app.platform.settings import get_settings

    require_database()
    engine = create_engine(get_settings(), pool_size=1)
    try:
        async with create_session_factory(engine)() as session:
            yield session
    finally:
        await engine.dispose()


@main.group()
def menu() -> None:
    """Manage the menu."""


@menu.command("load-demo")
def load_demo() -> None:
    """Load (or refresh) the demo pizzas."""
    require_database()
    asyncio.run(load_demo_data())
    click.echo("demo menu loaded")


async def load_demo_data(
    accounts: Iterable[tuple[str, str, Role]] = (), password: str = ""
) -> None:
    """The demo menu, and the given demo accounts (``pizzeria up`` in demo mode)."""
    from app.accounts import service as accounts_service
    from app.menu import service as menu
    from app.platform.db import create_engine, create_session_factory
    from app.platform.settings import get_settings

    get_settings.cache_clear()
    engine = create_engine(get_settings())
    try:
        async with create_session_factory(engine)() as session:
            await menu.load_demo_menu(session, get_settings().shop.currency)
            for email, name, role in accounts:
                await accounts_service.ensure_user(
                    session, email=email, password=password, name=name, role=role
                )
    finally:
        await engine.dispose()


def _register_extensions() -> None:
    """Commands other installed packages add (``pizzeria.commands`` entry points): the
    development tools' ``up`` and ``bench``. The production image has no such package,
    and so no such commands."""
    for entry in entry_points(group="pizzeria.commands"):
        try:
            register = entry.load()
        except ImportError:
            continue
        if locate := register(main):
            LOCATE_SHOP.append(locate)


_register_extensions()

if __name__ == "__main__":
    main()
