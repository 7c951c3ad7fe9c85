"""The development tools' ``pizzeria`` commands, registered through the
``pizzeria.commands`` entry point (pyproject.toml): the runtime never imports them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from devtools.bench import bench_command
from devtools.embedded import use_running_shop


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def up(host: str, port: int) -> None:
    """Run everything: web, relay, workers, sandbox partners (embedded DBs if none given)."""
    from devtools.launcher import up as run_up

    sys.exit(run_up(host, port))


def register(main: click.Group) -> Callable[[], Path | None]:
    """Add ``up`` and ``bench``; return how to find a running ``up`` (its data folder
    when nothing runs there)."""
    main.add_command(up)
    main.add_command(bench_command())
    return use_running_shop
