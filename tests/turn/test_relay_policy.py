"""Where a relay may send: link-local, every IPv6 spelling, the appliance's own addresses.

The live tests give the appliance a non-loopback address on a private veth
"LAN" inside the test's network namespace (198.18.7.0/24), as a real
appliance has, and refuse loopback as a real appliance does.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator

import pytest

from helpers.netns import private_lan
from meshcall.turn import codec
from meshcall.turn.codec import Attr, Class, Method
from meshcall.turn.credentials import rest_credentials
from meshcall.turn.policy import embedded_ipv4, peer_ip_refusal, peer_refusal

from .conftest import SECRET, LiveServer, ServerFactory
from .stunclient import TestClient, error_code, relayed_address, with_peer

OWN = "198.18.7.1"
CHANNEL = [(Attr.CHANNEL_NUMBER, b"\x40\x00\x00\x00")]


@pytest.mark.parametrize(
    "spelling,embedded",
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),  # IPv4-mapped
        ("::127.0.0.1", "127.0.0.1"),  # IPv4-compatible
        ("64:ff9b::7f00:1", "127.0.0.1"),  # NAT64 well-known prefix
        ("64:ff9b:1:7f00:0:100::", "127.0.0.1"),  # NAT64 local-use /48
        ("2002:7f00:1::", "127.0.0.1"),  # 6to4
        ("2002:c612:701::1", OWN),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
    ],
)
def test_embedded_ipv4_is_found_in_every_spelling(spelling: str, embedded: str) -> None:
    assert ipaddress.IPv4Address(embedded) in embedded_ipv4(ipaddress.ip_address(spelling))


def test_policy_functions_allow_what_a_call_needs() -> None:
    own = frozenset({OWN})
    for host in ("192.0.2.7", "2001:db8::1", "10.1.2.3", OWN):
        assert peer_ip_refusal(host, allow_loopback=False, own_addresses=own) is None, host
    # Another client's relayed address on the appliance: reachable; any other port there is not.
    assert peer_refusal(OWN, 50000, allow_loopback=False, own_addresses=own, forbidden_ports=frozenset(),
                        relayed={(OWN, 50000): None}) is None  # fmt: skip
    assert peer_refusal(OWN, 50001, allow_loopback=False, own_addresses=own, forbidden_ports=frozenset(),
                        relayed={(OWN, 50000): None}) is not None  # fmt: skip
    # Loopback allowed (tests on one machine): any loopback port but the service ports.
    assert peer_refusal("127.0.0.1", 9, allow_loopback=True, own_addresses=own, forbidden_ports=frozenset({8443})) is None
    assert peer_refusal("127.0.0.1", 8443, allow_loopback=True, own_addresses=own, forbidden_ports=frozenset({8443}))


@pytest.fixture
def lan_server(turn_factory: ServerFactory) -> Iterator[LiveServer]:
    with private_lan("lan7", "198.18.7"):
        yield turn_factory.start(listen=[OWN, "::1"], allow_loopback_peers=False, forbidden_ports=frozenset({8443}))


def client_on(server: LiveServer, host: str, user: str) -> tuple[TestClient, tuple[str, int]]:
    client = TestClient(host, server.port)
    client.login(*rest_credentials(SECRET, user, 600))
    response = client.allocate()
    assert response.cls == Class.SUCCESS, error_code(response)
    return client, relayed_address(response)


@pytest.mark.parametrize("peer", ["169.254.169.254", "169.254.0.1", "127.0.0.1", "0.0.0.1"])
def test_ipv4_peers_refused(lan_server: LiveServer, peer: str) -> None:
    client, _ = client_on(lan_server, OWN, "v4")
    with client:
        assert error_code(with_peer(client, Method.CREATE_PERMISSION, peer, 5000)) == 403
        assert error_code(with_peer(client, Method.CHANNEL_BIND, peer, 5000, CHANNEL)) == 403


@pytest.mark.parametrize(
    "peer",
    [
        "fe80::1",
        "::1",
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        f"::ffff:{OWN}",
        f"::{OWN}",
        "64:ff9b::c612:701",
        "2002:c612:701::1",
    ],
)
def test_every_ipv6_spelling_refused(lan_server: LiveServer, peer: str) -> None:
    client, _ = client_on(lan_server, "::1", "v6")
    with client:
        assert error_code(with_peer(client, Method.CREATE_PERMISSION, peer, 5000)) == 403
        assert error_code(with_peer(client, Method.CHANNEL_BIND, peer, 5000, CHANNEL)) == 403


def test_ordinary_peers_still_allowed(lan_server: LiveServer) -> None:
    v4, _ = client_on(lan_server, OWN, "v4")
    v6, _ = client_on(lan_server, "::1", "v6")
    with v4, v6:
        assert with_peer(v4, Method.CHANNEL_BIND, "198.18.9.9", 5000, CHANNEL).cls == Class.SUCCESS
        assert with_peer(v6, Method.CHANNEL_BIND, "2001:db8::1", 5000, CHANNEL).cls == Class.SUCCESS


def test_every_port_of_the_appliance_refused_but_relay_to_relay_works(lan_server: LiveServer) -> None:
    alice, alice_relay = client_on(lan_server, OWN, "alice")
    bob, bob_relay = client_on(lan_server, OWN, "bob")
    # A service of the appliance on a port nobody listed (the relay must not reach it).
    with alice, bob, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as service:
        service.bind((OWN, 0))
        service_port = service.getsockname()[1]
        unused = next(p for p in (50000, 50001, 50002) if p not in (alice_relay[1], bob_relay[1]))
        for port in (8443, lan_server.port, service_port, unused):
            assert error_code(with_peer(alice, Method.CHANNEL_BIND, OWN, port, CHANNEL)) == 403, port
        # A permission is per IP: the appliance's own IP may be permitted (for relay to relay),
        # but a Send to a port that is not a relayed address is dropped.
        assert with_peer(alice, Method.CREATE_PERMISSION, OWN, service_port).cls == Class.SUCCESS
        send_tid = b"\x01" * 12
        indication = codec.Message(Method.SEND, Class.INDICATION, send_tid)
        indication.add(Attr.XOR_PEER_ADDRESS, codec.pack_xor_address(OWN, service_port, send_tid))
        indication.add(Attr.DATA, b"knock knock")
        alice.send_raw(indication.encode())
        deadline = time.monotonic() + 5
        while lan_server.stats()["packets_dropped"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lan_server.stats()["packets_dropped"] == 1
        service.setblocking(False)
        with pytest.raises(BlockingIOError):
            service.recv(100)
        # Relay to relay: Alice binds a channel to Bob's relayed address; Bob permits Alice's.
        assert with_peer(alice, Method.CHANNEL_BIND, bob_relay[0], bob_relay[1], CHANNEL).cls == Class.SUCCESS
        assert with_peer(bob, Method.CREATE_PERMISSION, alice_relay[0], alice_relay[1]).cls == Class.SUCCESS
        alice.send_raw(codec.pack_channel_data(0x4000, b"through two relays"))
        data = codec.parse_message(bob.recv_raw())
        assert data.get(Attr.DATA) == b"through two relays"


def test_a_route_to_another_relay_ends_with_that_allocation(lan_server: LiveServer) -> None:
    alice, alice_relay = client_on(lan_server, OWN, "alice")
    bob, bob_relay = client_on(lan_server, OWN, "bob")
    with alice, bob:
        assert with_peer(alice, Method.CHANNEL_BIND, bob_relay[0], bob_relay[1], CHANNEL).cls == Class.SUCCESS
        assert with_peer(bob, Method.CREATE_PERMISSION, alice_relay[0], alice_relay[1]).cls == Class.SUCCESS
        alice.send_raw(codec.pack_channel_data(0x4000, b"hello bob"))
        assert codec.parse_message(bob.recv_raw()).get(Attr.DATA) == b"hello bob"
        # Bob's allocation ends: its port is no longer a relayed address, so the channel
        # Alice bound to it must not reach whatever binds that port next.
        assert bob.request(Method.REFRESH, [(Attr.LIFETIME, codec.pack_u32(0))]).cls == Class.SUCCESS
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
            deadline = time.monotonic() + 5
            while True:  # the relay socket closes on the server's next loop turn
                try:
                    squatter.bind(bob_relay)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            dropped = lan_server.stats()["packets_dropped"]
            alice.send_raw(codec.pack_channel_data(0x4000, b"to the squatter"))
            deadline = time.monotonic() + 5
            while lan_server.stats()["packets_dropped"] == dropped and time.monotonic() < deadline:
                time.sleep(0.02)
            assert lan_server.stats()["packets_dropped"] == dropped + 1
            squatter.setblocking(False)
            with pytest.raises(BlockingIOError):
                squatter.recv(100)
