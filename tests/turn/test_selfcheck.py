"""self_check() against a live server, and against nothing."""

from __future__ import annotations

import asyncio
import re
import socket

from meshcall.turn.selfcheck import self_check

from .conftest import SECRET, LiveServer, ServerFactory


def test_self_check_ok_and_relays(turn_server: LiveServer) -> None:
    ok, message = asyncio.run(self_check("127.0.0.1", turn_server.port, SECRET))
    assert ok, message
    assert re.fullmatch(r"relay works: allocated 127\.0\.0\.1:\d+, a packet went through it", message)
    assert turn_server.stats()["allocations"] == 0  # released again


def test_self_check_with_loopback_peers_refused_still_allocates(turn_factory: ServerFactory) -> None:
    server = turn_factory.start(allow_loopback_peers=False)
    ok, message = asyncio.run(self_check("127.0.0.1", server.port, SECRET))
    assert ok, message
    assert message.startswith("relay works: allocated 127.0.0.1:")
    assert "403" in message


def test_self_check_wrong_secret(turn_server: LiveServer) -> None:
    ok, message = asyncio.run(self_check("127.0.0.1", turn_server.port, b"wrong"))
    assert not ok
    assert "refused an allocation: 401" in message


def test_self_check_nobody_listening() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ok, message = asyncio.run(self_check("127.0.0.1", port, SECRET))
    assert not ok
    assert str(port) in message
