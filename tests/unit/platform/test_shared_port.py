"""``pizzeria serve --reuse-port``: web replicas on one port, each with its own drain."""

from __future__ import annotations

import socket

import pytest

from app.cli import _shared_socket


def test_two_replicas_listen_on_one_port_and_both_take_connections() -> None:
    first = _shared_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = _shared_socket("127.0.0.1", port)
    try:
        for sock in (first, second):
            sock.listen(64)
            sock.settimeout(2)
        accepted: set[int] = set()
        for _ in range(64):  # the kernel spreads connections by their source port
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
        for index, sock in enumerate((first, second)):
            try:
                while True:
                    sock.settimeout(0.2)
                    sock.accept()[0].close()
                    accepted.add(index)
            except TimeoutError:
                pass
        assert accepted == {0, 1}
    finally:
        first.close()
        second.close()


def test_a_port_held_without_sharing_is_refused() -> None:
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen()
    try:
        with pytest.raises(OSError, match="in use"):
            _shared_socket("127.0.0.1", plain.getsockname()[1])
    finally:
        plain.close()


def test_uvicorn_s_own_workers_refuse_the_replica_options() -> None:
    from click.testing import CliRunner

    from app.cli import main

    ran = CliRunner().invoke(main, ["serve", "--workers", "2", "--reuse-port"])
    assert ran.exit_code == 2 and "one process each" in ran.output
