"""Idle TCP connections to the TURN port cannot lock out a real client.

Only loopback traffic; every loop is bounded in count and in time.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from meshcall.turn.codec import Class, Method
from meshcall.turn.credentials import rest_credentials
from meshcall.turn.limits import MAX_TCP_CONNECTIONS, TCP_IDLE_WITHOUT_ALLOCATION, TCP_IDLE_WITHOUT_AUTHENTICATION

from .conftest import SECRET, FakeClock, LiveServer, ServerFactory
from .stunclient import TestClient, error_code

IDLE_CONNECTIONS = 1000
TIME_LIMIT = 60.0


def wait_for(condition: object, what: str, timeout: float = TIME_LIMIT) -> None:
    """A bound for a machine under load, not a timing: on a quiet one it takes well under a second."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextmanager
def idle_connections(server: LiveServer, count: int, source: str = "127.0.0.1") -> Iterator[list[socket.socket]]:
    """``count`` TCP connections that never send a byte (the server may close some)."""
    opened: list[socket.socket] = []
    started = time.monotonic()
    try:
        for _ in range(count):
            if time.monotonic() - started > TIME_LIMIT:
                pytest.fail(f"opening {count} connections took over {TIME_LIMIT} s")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            opened.append(sock)
            sock.settimeout(5)
            sock.bind((source, 0))
            sock.connect((server.host, server.port))
        yield opened
    finally:
        for sock in opened:
            sock.close()


def allocate_over_tcp(server: LiveServer, source: str) -> int | None:
    with TestClient(server.host, server.port, tcp=True, source=source, timeout=30) as client:
        client.login(*rest_credentials(SECRET, "real-person", 600))
        response = client.allocate()
        return None if response.cls == Class.SUCCESS else error_code(response)


@pytest.mark.parametrize(
    "per_address,real_source",
    [
        # The idle flood comes from one address: the per-address cap stops it.
        (None, "127.0.0.2"),
        # The per-address cap set high: the connection table fills up, and the oldest
        # unauthenticated connection makes room, even for a client at the same address.
        (2 * IDLE_CONNECTIONS, "127.0.0.1"),
    ],
    ids=["per-address-cap", "table-full"],
)
def test_a_thousand_idle_connections_do_not_stop_a_tcp_allocation(
    turn_factory: ServerFactory, per_address: int | None, real_source: str
) -> None:
    overrides = {} if per_address is None else {"max_allocations_per_ip": per_address}
    server = turn_factory.start(**overrides)
    expected = min(IDLE_CONNECTIONS, MAX_TCP_CONNECTIONS, server.server.config.max_allocations_per_ip)
    with idle_connections(server, IDLE_CONNECTIONS):
        wait_for(lambda: server.stats()["tcp_connections"] >= expected, f"{expected} connections accepted")
        assert allocate_over_tcp(server, real_source) is None
    assert server.stats()["allocations_total"] == 1


def test_unauthenticated_connections_are_closed_first(turn_factory: ServerFactory) -> None:
    clock = FakeClock(1000.0)
    server = turn_factory.start(clock=clock)
    with idle_connections(server, 3) as idle, TestClient(server.host, server.port, tcp=True, timeout=5) as authed:
        authed.login(*rest_credentials(SECRET, "slow", 600))
        # Authenticated, but asking for something it cannot have: no allocation yet.
        assert error_code(authed.request(Method.ALLOCATE, [])) == 400
        wait_for(lambda: server.stats()["tcp_connections"] == 4, "4 connections accepted")
        clock.advance(TCP_IDLE_WITHOUT_AUTHENTICATION + 1)
        server.sweep()
        for sock in idle:
            assert sock.recv(10) == b""
        assert authed.request(Method.BINDING).cls == Class.SUCCESS
        clock.advance(TCP_IDLE_WITHOUT_ALLOCATION)
        server.sweep()
        with pytest.raises(ConnectionError):
            authed.recv_raw()
