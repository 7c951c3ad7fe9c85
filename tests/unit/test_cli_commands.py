"""Every command of the ``pizzeria`` CLI takes exactly the options it declares.

click calls a command's function with one keyword per declared option: an option the
function has no parameter for fails every run with a TypeError, and a parameter no option
fills fails it too, yet ``--help`` works and nothing else notices. ``pizzeria bench
statements`` shipped that way (a stray ``--alone``)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import click
import pytest

from app.cli import main


def _commands(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, f"{path} {name}")
    else:
        yield path, command


COMMANDS = dict(_commands(main, "pizzeria"))


def test_the_development_commands_are_among_those_checked() -> None:
    assert {"pizzeria up", "pizzeria bench orders", "pizzeria bench statements"} <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_a_command_takes_exactly_the_options_it_declares(path: str) -> None:
    command = COMMANDS[path]
    assert command.callback is not None
    declared = {param.name for param in command.params}
    taken = {
        name
        for name, param in inspect.signature(command.callback).parameters.items()
        if param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL)
    }
    assert declared == taken, f"options only {declared - taken}, parameters only {taken - declared}"
