"""Error paths and policy of meshcall's TURN server, each with its exact code."""

from __future__ import annotations

import os
import socket
import time

import pytest

from meshcall.turn import codec
from meshcall.turn.codec import Attr, Class, Message, Method
from meshcall.turn.credentials import rest_credentials, rest_password

from meshcall.turn.limits import TCP_IDLE_WITHOUT_ALLOCATION

from .conftest import SECRET, FakeClock, LiveServer, ServerFactory
from .stunclient import TestClient, error_code, relayed_address, with_peer

UDP = (Attr.REQUESTED_TRANSPORT, b"\x11\x00\x00\x00")


def logged_in(server: LiveServer, user: str = "dave", *, tcp: bool = False) -> TestClient:
    client = TestClient(server.host, server.port, tcp=tcp)
    client.login(*rest_credentials(SECRET, user, 600))
    return client


def allocated(server: LiveServer, user: str = "dave", *, tcp: bool = False) -> tuple[TestClient, tuple[str, int]]:
    client = logged_in(server, user, tcp=tcp)
    response = client.allocate()
    assert response.cls == Class.SUCCESS, error_code(response)
    return client, relayed_address(response)


def test_binding_over_udp_and_tcp(turn_server: LiveServer) -> None:
    for tcp in (False, True):
        with TestClient("127.0.0.1", turn_server.port, tcp=tcp) as client:
            response = client.request(Method.BINDING)
            assert response.cls == Class.SUCCESS
            value = response.get(Attr.XOR_MAPPED_ADDRESS)
            assert value is not None
            assert codec.unpack_xor_address(value, response.transaction_id) == client.sock.getsockname()[:2]
            assert codec.verify_fingerprint(response)


def test_unauthenticated_allocate_gets_401_with_realm_and_nonce(turn_server: LiveServer) -> None:
    with TestClient("127.0.0.1", turn_server.port) as client:
        response = client.request(Method.ALLOCATE, [UDP], sign=False)
        assert response.cls == Class.ERROR and error_code(response) == 401
        assert response.get(Attr.REALM) == b"meshcall"
        assert response.get(Attr.NONCE)
        assert response.get(Attr.MESSAGE_INTEGRITY) is None


@pytest.mark.parametrize(
    "credentials",
    [
        ("wrong-password", lambda: (rest_credentials(SECRET, "x", 600)[0], "not-the-password")),
        ("wrong-secret", lambda: rest_credentials(b"other", "x", 600)),
        ("expired", lambda: (lambda u: (u, rest_password(SECRET, u)))(f"{int(time.time()) - 5}:x")),
        ("no-expiry", lambda: ("x", rest_password(SECRET, "x"))),
    ],
    ids=lambda c: c[0],
)
def test_bad_credentials_get_401(turn_server: LiveServer, credentials: tuple[str, object]) -> None:
    username, password = credentials[1]()  # type: ignore[operator]
    with TestClient("127.0.0.1", turn_server.port) as client:
        client.login(username, password)
        response = client.allocate()
        assert error_code(response) == 401
        assert response.get(Attr.NONCE) and response.get(Attr.REALM)
    assert turn_server.stats()["allocations"] == 0


def test_missing_realm_or_nonce_with_integrity_gets_400(turn_server: LiveServer) -> None:
    with logged_in(turn_server) as client:
        message = Message(Method.ALLOCATE, Class.REQUEST, os.urandom(12), [UDP])
        message.add(Attr.USERNAME, client.username.encode())
        assert client.key is not None
        client.send_raw(message.encode(client.key))
        assert error_code(client.recv_message(message.transaction_id)) == 400


def test_stale_nonce_gets_438_then_succeeds_with_the_new_one(turn_factory: ServerFactory) -> None:
    clock = FakeClock(1000.0)
    server = turn_factory.start(nonce_lifetime=60, clock=clock)
    with logged_in(server) as client:
        clock.advance(59)
        assert client.request(Method.BINDING).cls == Class.SUCCESS
        clock.advance(2)
        response = client.allocate()
        assert error_code(response) == 438
        nonce = response.get(Attr.NONCE)
        assert nonce and nonce != client.nonce and response.get(Attr.REALM) == b"meshcall"
        client.nonce = nonce
        assert client.allocate().cls == Class.SUCCESS


def test_integrity_sha256_is_answered_in_kind(turn_server: LiveServer) -> None:
    with logged_in(turn_server) as client:
        response = client.request(Method.ALLOCATE, [UDP], sha256=True)
        assert response.cls == Class.SUCCESS
        assert client.key is not None
        assert response.integrity_offset is None
        assert codec.verify_integrity_sha256(response, client.key)


def test_allocate_success_is_signed_and_lifetime_capped(turn_server: LiveServer) -> None:
    with logged_in(turn_server) as client:
        response = client.allocate([(Attr.LIFETIME, codec.pack_u32(100_000))])
        assert response.cls == Class.SUCCESS
        assert client.key is not None and codec.verify_integrity(response, client.key)
        lifetime = response.get(Attr.LIFETIME)
        assert lifetime is not None and codec.unpack_u32(lifetime, "LIFETIME") == 3600
        mapped = response.get(Attr.XOR_MAPPED_ADDRESS)
        assert mapped is not None
        assert codec.unpack_xor_address(mapped, response.transaction_id) == client.sock.getsockname()[:2]
        # A second Allocate on the same 5-tuple: 437 Allocation Mismatch.
        assert error_code(client.allocate()) == 437
        # Refresh to 0 deletes it; a further Refresh finds nothing: 437.
        refreshed = client.request(Method.REFRESH, [(Attr.LIFETIME, codec.pack_u32(0))])
        assert refreshed.cls == Class.SUCCESS
        assert error_code(client.request(Method.REFRESH)) == 437
    assert turn_server.stats()["allocations"] == 0


def test_allocate_transport_checks(turn_server: LiveServer) -> None:
    with logged_in(turn_server) as client:
        assert error_code(client.request(Method.ALLOCATE, [])) == 400
        assert error_code(client.request(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, b"\x06\x00\x00\x00")])) == 442
        ipv6 = (Attr.REQUESTED_ADDRESS_FAMILY, b"\x02\x00\x00\x00")
        assert error_code(client.allocate([ipv6])) == 440


def test_unknown_comprehension_required_attribute_gets_420(turn_server: LiveServer) -> None:
    with logged_in(turn_server) as client:
        response = client.allocate([(0x7777, b"\x00\x00\x00\x00")])
        assert error_code(response) == 420
        assert response.get(Attr.UNKNOWN_ATTRIBUTES) == b"\x77\x77"


def test_requests_without_allocation_get_437(turn_server: LiveServer) -> None:
    with logged_in(turn_server) as client:
        assert error_code(with_peer(client, Method.CREATE_PERMISSION, "127.0.0.1", 9)) == 437
        response = with_peer(client, Method.CHANNEL_BIND, "127.0.0.1", 9, [(Attr.CHANNEL_NUMBER, b"\x40\x00\x00\x00")])
        assert error_code(response) == 437


def test_other_credentials_on_an_allocation_get_441(turn_server: LiveServer) -> None:
    client, _ = allocated(turn_server, "erin")
    with client:
        client.username, password = rest_credentials(SECRET, "frank", 600)
        client.key = codec.long_term_key(client.username, "meshcall", password)
        assert error_code(client.request(Method.REFRESH)) == 441


def test_loopback_peers_refused_unless_allowed(turn_factory: ServerFactory) -> None:
    server = turn_factory.start(allow_loopback_peers=False)
    client, _ = allocated(server)
    with client:
        for host in ("127.0.0.1", "127.1.2.3"):
            assert error_code(with_peer(client, Method.CREATE_PERMISSION, host, 5000)) == 403
        channel = [(Attr.CHANNEL_NUMBER, b"\x40\x00\x00\x00")]
        assert error_code(with_peer(client, Method.CHANNEL_BIND, "127.0.0.1", 5000, channel)) == 403
        assert with_peer(client, Method.CREATE_PERMISSION, "192.0.2.7", 5000).cls == Class.SUCCESS


@pytest.mark.parametrize("host", ["0.0.0.0", "224.0.0.1", "239.1.2.3", "255.255.255.255"])
def test_special_addresses_refused(turn_server: LiveServer, host: str) -> None:
    client, _ = allocated(turn_server)
    with client:
        assert error_code(with_peer(client, Method.CREATE_PERMISSION, host, 5000)) == 403


def test_own_service_ports_refused_but_relay_to_relay_works(turn_factory: ServerFactory) -> None:
    server = turn_factory.start(forbidden_ports=frozenset({8443}))
    alice, alice_relay = allocated(server, "alice")
    bob, bob_relay = allocated(server, "bob")
    with alice, bob:
        channel = [(Attr.CHANNEL_NUMBER, b"\x40\x01\x00\x00")]
        for port in (8443, server.port):
            assert error_code(with_peer(alice, Method.CHANNEL_BIND, "127.0.0.1", port, channel)) == 403
        # Alice binds a channel to Bob's relayed address; Bob permits Alice's.
        assert with_peer(alice, Method.CHANNEL_BIND, bob_relay[0], bob_relay[1], channel).cls == Class.SUCCESS
        assert with_peer(bob, Method.CREATE_PERMISSION, alice_relay[0], alice_relay[1]).cls == Class.SUCCESS
        alice.send_raw(codec.pack_channel_data(0x4001, b"through two relays"))
        indication = codec.parse_message(bob.recv_raw())
        assert (indication.method, indication.cls) == (Method.DATA, Class.INDICATION)
        assert indication.get(Attr.DATA) == b"through two relays"
        peer = indication.get(Attr.XOR_PEER_ADDRESS)
        assert peer is not None and codec.unpack_xor_address(peer, indication.transaction_id) == alice_relay


def test_bad_channel_numbers_get_400(turn_server: LiveServer) -> None:
    client, _ = allocated(turn_server)
    with client:
        for number in (b"\x3f\xff\x00\x00", b"\x80\x00\x00\x00"):
            response = with_peer(client, Method.CHANNEL_BIND, "127.0.0.1", 7000, [(Attr.CHANNEL_NUMBER, number)])
            assert error_code(response) == 400
        ok = with_peer(client, Method.CHANNEL_BIND, "127.0.0.1", 7000, [(Attr.CHANNEL_NUMBER, b"\x40\x00\x00\x00")])
        assert ok.cls == Class.SUCCESS
        # The same channel to another peer, or the same peer on another channel: 400.
        clash = with_peer(client, Method.CHANNEL_BIND, "127.0.0.1", 7001, [(Attr.CHANNEL_NUMBER, b"\x40\x00\x00\x00")])
        assert error_code(clash) == 400
        clash = with_peer(client, Method.CHANNEL_BIND, "127.0.0.1", 7000, [(Attr.CHANNEL_NUMBER, b"\x40\x02\x00\x00")])
        assert error_code(clash) == 400


def test_allocation_quotas_give_486(turn_factory: ServerFactory) -> None:
    server = turn_factory.start(max_allocations_per_user=2, max_allocations=3)
    clients = [allocated(server, "gina")[0], allocated(server, "gina")[0]]
    try:
        third = logged_in(server, "gina")
        clients.append(third)
        assert error_code(third.allocate()) == 486
        clients.append(allocated(server, "hank")[0])
        fourth = logged_in(server, "ivan")
        clients.append(fourth)
        assert error_code(fourth.allocate()) == 486
    finally:
        for client in clients:
            client.close()
    assert server.stats()["allocations"] == 3


def test_bandwidth_cap_drops_excess(turn_factory: ServerFactory) -> None:
    server = turn_factory.start(bandwidth_per_allocation=20_000)
    client, _ = allocated(server)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.5)
    with client, sink:
        target = sink.getsockname()
        channel = [(Attr.CHANNEL_NUMBER, b"\x40\x00\x00\x00")]
        assert with_peer(client, Method.CHANNEL_BIND, target[0], target[1], channel).cls == Class.SUCCESS
        for _ in range(300):
            client.send_raw(codec.pack_channel_data(0x4000, b"x" * 1000))
        received = 0
        try:
            while True:
                sink.recv(2000)
                received += 1
        except TimeoutError:
            pass
    # A burst of at most 64 KiB plus ~20 kB/s refill gets through; the rest is dropped.
    assert 1 <= received <= 110
    # (Some may also be lost in the kernel before the server reads them.)
    assert server.stats()["packets_dropped"] >= 100


def test_tcp_allocation_ends_with_its_connection(turn_server: LiveServer) -> None:
    client, _ = allocated(turn_server, tcp=True)
    assert turn_server.stats()["allocations"] == 1
    client.close()
    deadline = time.monotonic() + 5
    while turn_server.stats()["allocations"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert turn_server.stats()["allocations"] == 0


def test_garbage_is_dropped_and_malformed_requests_get_400(turn_server: LiveServer) -> None:
    with TestClient("127.0.0.1", turn_server.port, timeout=0.3) as client:
        for junk in (b"", b"\x00", b"\x00\x01\x00", os.urandom(19), b"\xff" * 40, b"\x40\x00\x00\x10abc"):
            client.send_raw(junk)
        with pytest.raises(TimeoutError):
            client.recv_raw()
        # A request whose length field disagrees with the datagram: 400.
        transaction_id = os.urandom(12)
        bad = bytearray(Message(Method.ALLOCATE, Class.REQUEST, transaction_id, [UDP]).encode())
        bad[3] += 4
        client.send_raw(bytes(bad))
        response = client.recv_message(transaction_id)
        assert error_code(response) == 400
        # An attribute overrunning the message: 400.
        bad = bytearray(Message(Method.BINDING, Class.REQUEST, transaction_id, [(Attr.SOFTWARE, b"abcd")]).encode())
        bad[23] = 40
        client.send_raw(bytes(bad))
        assert error_code(client.recv_message(transaction_id)) == 400
        # Still alive.
        client.sock.settimeout(3)
        assert client.request(Method.BINDING).cls == Class.SUCCESS


def test_unknown_port_taken_gives_clear_oserror(turn_factory: ServerFactory, turn_server: LiveServer) -> None:
    with pytest.raises(OSError, match="cannot bind UDP 127.0.0.1 port"):
        turn_factory.start(port=turn_server.port)


def test_even_port_reservation_and_token(turn_server: LiveServer) -> None:
    first, _ = allocated(turn_server, "rtp")
    with first:
        first.request(Method.REFRESH, [(Attr.LIFETIME, codec.pack_u32(0))])
    with logged_in(turn_server, "rtp") as rtp, logged_in(turn_server, "rtp") as rtcp:
        response = rtp.allocate([(Attr.EVEN_PORT, b"\x80")])
        assert response.cls == Class.SUCCESS, error_code(response)
        host, port = relayed_address(response)
        assert port % 2 == 0
        token = response.get(Attr.RESERVATION_TOKEN)
        assert token is not None and len(token) == 8
        assert error_code(rtcp.allocate([(Attr.RESERVATION_TOKEN, b"\x00" * 8)])) == 508
        second = rtcp.allocate([(Attr.RESERVATION_TOKEN, token)])
        assert second.cls == Class.SUCCESS, error_code(second)
        assert relayed_address(second) == (host, port + 1)


def test_allocation_expires_after_its_lifetime(turn_factory: ServerFactory) -> None:
    clock = FakeClock(1000.0)
    server = turn_factory.start(max_lifetime=60, clock=clock)
    client, _ = allocated(server)
    with client:
        clock.advance(59)
        server.sweep()
        assert server.stats()["allocations"] == 1
        clock.advance(2)
        server.sweep()
        assert server.stats()["allocations"] == 0
        assert error_code(client.request(Method.REFRESH)) == 437


def test_tcp_connection_without_allocation_is_closed(turn_factory: ServerFactory) -> None:
    clock = FakeClock(1000.0)
    server = turn_factory.start(clock=clock)
    with TestClient("127.0.0.1", server.port, tcp=True, timeout=5) as idle:
        assert idle.request(Method.BINDING).cls == Class.SUCCESS
        kept, _ = allocated(server, tcp=True)
        with kept:
            clock.advance(TCP_IDLE_WITHOUT_ALLOCATION + 1)
            server.sweep()
            assert idle.sock.recv(10) == b""  # closed by the server
            assert kept.request(Method.BINDING).cls == Class.SUCCESS


def test_an_ongoing_allocation_outlives_its_username_but_a_new_one_cannot_start(turn_factory: ServerFactory) -> None:
    wall = FakeClock(time.time())
    turn_server = turn_factory.start(wall_clock=wall)
    username, password = rest_credentials(SECRET, "kiosk", 2, now=wall.now)
    with TestClient(turn_server.host, turn_server.port) as client:
        client.login(username, password)
        assert client.allocate().cls == Class.SUCCESS
        wall.advance(3)
        assert int(username.split(":")[0]) < wall.now, "the username should have expired by now"
        # The session it started goes on: refresh, permissions, channels.
        assert client.request(Method.REFRESH, [(Attr.LIFETIME, codec.pack_u32(600))]).cls == Class.SUCCESS
        peer = codec.pack_xor_address("198.18.0.9", 40000, b"\x00" * 12)
        assert client.request(Method.CREATE_PERMISSION, [(Attr.XOR_PEER_ADDRESS, peer)]).cls == Class.SUCCESS
        # Once it ends, the expired username cannot start another.
        assert client.request(Method.REFRESH, [(Attr.LIFETIME, codec.pack_u32(0))]).cls == Class.SUCCESS
        assert error_code(client.allocate()) == 401
    with TestClient(turn_server.host, turn_server.port) as other:
        other.login(username, password)
        assert error_code(other.allocate()) == 401
