"""The relaying fast path keeps the rules: routes follow permissions, frames are exact."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from meshcall.turn import codec
from meshcall.turn.codec import Attr, Class, Method
from meshcall.turn.credentials import rest_credentials
from meshcall.turn.limits import PERMISSION_LIFETIME
from meshcall.turn.transports import DRAIN_LIMIT

from .conftest import SECRET, FakeClock, LiveServer, ServerFactory
from .stunclient import TestClient, error_code, relayed_address, with_peer

CHANNEL = [(Attr.CHANNEL_NUMBER, b"\x40\x05\x00\x00")]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def allocated(server: LiveServer, user: str, *, tcp: bool = False) -> tuple[TestClient, tuple[str, int]]:
    client = TestClient(server.host, server.port, tcp=tcp)
    client.login(*rest_credentials(SECRET, user, 600))
    response = client.allocate()
    assert response.cls == Class.SUCCESS, error_code(response)
    return client, relayed_address(response)


@pytest.fixture
def peer() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3)
        yield sock
    finally:
        sock.close()


def test_a_channel_stops_with_its_permission_and_comes_back_with_a_new_one(
    turn_factory: ServerFactory, peer: socket.socket
) -> None:
    clock = FakeClock(1000.0)
    server = turn_factory.start(clock=clock)
    client, relayed = allocated(server, "route")
    with client:
        target = peer.getsockname()
        assert with_peer(client, Method.CHANNEL_BIND, target[0], target[1], CHANNEL).cls == Class.SUCCESS
        client.send_raw(codec.pack_channel_data(0x4005, b"one"))
        assert peer.recvfrom(100) == (b"one", relayed)
        # The permission (300 s) runs out before the channel (600 s): nothing passes either way.
        clock.advance(PERMISSION_LIFETIME + 1)
        server.sweep()
        dropped = server.stats()["packets_dropped"]
        client.send_raw(codec.pack_channel_data(0x4005, b"lost"))
        peer.sendto(b"lost too", relayed)
        wait_for(lambda: server.stats()["packets_dropped"] == dropped + 2, "two drops")
        # A CreatePermission renews the route the channel holds.
        assert with_peer(client, Method.CREATE_PERMISSION, target[0], target[1]).cls == Class.SUCCESS
        client.send_raw(codec.pack_channel_data(0x4005, b"two"))
        assert peer.recvfrom(100) == (b"two", relayed)
        peer.sendto(b"back", relayed)
        assert codec.unpack_channel_data(client.recv_raw()) == (0x4005, b"back")


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 1001])
def test_channel_data_to_a_tcp_client_is_padded_and_framed(
    turn_server: LiveServer, peer: socket.socket, size: int
) -> None:
    client, relayed = allocated(turn_server, "tcp-route", tcp=True)
    with client:
        target = peer.getsockname()
        assert with_peer(client, Method.CHANNEL_BIND, target[0], target[1], CHANNEL).cls == Class.SUCCESS
        payloads = [bytes([i]) * size for i in range(1, 4)]
        for payload in payloads:
            peer.sendto(payload, relayed)
        for payload in payloads:
            frame = client.recv_raw()
            assert len(frame) % 4 == 0
            assert codec.unpack_channel_data(frame) == (0x4005, payload)


def test_send_and_data_indications_round_trip(turn_server: LiveServer, peer: socket.socket) -> None:
    client, relayed = allocated(turn_server, "indications")
    with client:
        target = peer.getsockname()
        assert with_peer(client, Method.CREATE_PERMISSION, target[0], target[1]).cls == Class.SUCCESS
        for i in range(3):  # the first works out the route, the others reuse it
            tid = bytes([i]) * 12
            send = codec.Message(Method.SEND, Class.INDICATION, tid)
            send.add(Attr.XOR_PEER_ADDRESS, codec.pack_xor_address(target[0], target[1], tid))
            send.add(Attr.DATA, f"send {i}".encode())
            client.send_raw(send.encode())
            assert peer.recvfrom(100) == (f"send {i}".encode(), relayed)
        peer.sendto(b"data", relayed)
        indication = codec.parse_message(client.recv_raw())
        assert (indication.method, indication.cls) == (Method.DATA, Class.INDICATION)
        assert indication.get(Attr.DATA) == b"data"
        value = indication.get(Attr.XOR_PEER_ADDRESS)
        assert value is not None and codec.unpack_xor_address(value, indication.transaction_id) == target


@contextlib.contextmanager
def loop_held(server: LiveServer) -> Iterator[None]:
    """Keep the server's event loop busy, so datagrams sent meanwhile queue in its sockets."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    server.loop.call_soon_threadsafe(hold)
    assert started.wait(5), "the server's loop did not run"
    try:
        yield
    finally:
        release.set()


BURST = 3 * DRAIN_LIMIT + 5  # more than one wake-up reads, so the reader must come back


def test_a_burst_queued_in_the_sockets_is_relayed_whole_and_in_order(
    turn_server: LiveServer, peer: socket.socket
) -> None:
    # Both directions are read into one reused buffer per socket and sent on from it:
    # every datagram must leave with its own bytes, none lost between wake-ups.
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    client, relayed = allocated(turn_server, "burst")
    with client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        target = peer.getsockname()
        assert with_peer(client, Method.CHANNEL_BIND, target[0], target[1], CHANNEL).cls == Class.SUCCESS
        payloads = [f"packet {i:03d} ".encode() * (1 + i % 7) for i in range(BURST)]
        with loop_held(turn_server):
            for payload in payloads:
                client.send_raw(codec.pack_channel_data(0x4005, payload))
        assert [peer.recvfrom(1000) for _ in payloads] == [(p, relayed) for p in payloads]
        with loop_held(turn_server):
            for payload in payloads:
                peer.sendto(payload, relayed)
        assert [codec.unpack_channel_data(client.recv_raw()) for _ in payloads] == [(0x4005, p) for p in payloads]
