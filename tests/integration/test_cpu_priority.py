"""CPU priority on one machine (``app.platform.priority``): a part's own scheduling
group, and a niced part's PostgreSQL backends niced alike, over a real connection to the
test PostgreSQL (which runs on this machine)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import psutil
import pytest

from app.platform import priority
from tests.support.env import ROOT


def test_a_part_started_nicer_gets_a_session_and_a_group_of_its_own() -> None:
    own = priority.niceness()
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        preexec_fn=lambda: priority.start_own_group(5),
    )
    try:
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
        assert psutil.Process(child.pid).nice() == min(own + 5, 19)
        group = priority.group_niceness(child.pid)
        assert group in (None, min(own + 5, 19)), f"its group's niceness: {group}"
    finally:
        child.kill()
        child.wait()


def test_a_part_at_normal_priority_keeps_its_group_at_normal_priority() -> None:
    if priority.niceness() != 0:
        pytest.skip("the tests themselves run niced: no normal priority to keep")
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        preexec_fn=lambda: priority.start_own_group(0),
    )
    try:
        assert os.getsid(child.pid) == child.pid
        assert psutil.Process(child.pid).nice() == 0
        assert priority.group_niceness(child.pid) in (None, 0)
    finally:
        child.kill()
        child.wait()


#: a niced process (as ``pizzeria up`` starts a worker) opening a connection through
#: ``create_engine``: its backend's pid, then that backend's niceness as seen from there
NICED_ENGINE = textwrap.dedent(
    """
    import asyncio, os, sys
    os.nice(7)
    from app.platform.db import create_engine
    from app.platform.settings import get_settings

    async def main():
        engine = create_engine(get_settings())
        async with engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            print(raw.get_server_pid(), flush=True)
            sys.stdin.readline()  # held open until the test has looked
        await engine.dispose()

    asyncio.run(main())
    """
)


@contextlib.contextmanager
def _backend_of(script: str, database_url: str) -> Iterator[psutil.Process]:
    """The backend serving ``script``'s connection, while the script holds it open."""
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        backend = psutil.Process(int(child.stdout.readline()))
        assert backend.cmdline()[0].startswith("postgres"), backend.cmdline()
        yield backend
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
        child.wait()


def test_a_niced_part_s_backends_are_niced_alike(migrated_db: str) -> None:
    """The test PostgreSQL runs here (as another user: the tests run as root on CI, which
    may renice it; elsewhere the backend is left alone and the test says so)."""
    with _backend_of(NICED_ENGINE, migrated_db) as backend:
        if backend.uids().real != os.getuid() and os.geteuid() != 0:
            pytest.skip("the test PostgreSQL belongs to another user: not ours to renice")
        assert backend.nice() == 7
        assert priority.group_niceness(backend.pid) in (None, 7)


def test_a_part_at_normal_priority_leaves_its_backends_alone(migrated_db: str) -> None:
    """The web's connections: no hook, the backend keeps PostgreSQL's own niceness."""
    with _backend_of(NICED_ENGINE.replace("os.nice(7)", "pass"), migrated_db) as backend:
        postmaster = backend.parent()
        assert postmaster is not None
        assert backend.nice() == postmaster.nice()


def test_a_pid_that_is_not_a_postgres_backend_is_left_alone() -> None:
    """A backend's pid from another machine may name some other program here."""
    if priority.niceness() != 0:
        pytest.skip("the tests themselves run niced")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        script = (
            "import os, sys; os.nice(9); from app.platform import priority; "
            "priority.pass_on_to_backend(int(sys.argv[1]))"
        )
        subprocess.run([sys.executable, "-c", script, str(other.pid)], cwd=ROOT, check=True)
        assert psutil.Process(other.pid).nice() == 0
    finally:
        other.kill()
        other.wait()
