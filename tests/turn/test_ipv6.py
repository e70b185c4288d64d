"""IPv6 and several listen addresses on one port."""

from __future__ import annotations

import socket

from meshcall.turn import codec
from meshcall.turn.codec import Attr, Class, Method
from meshcall.turn.credentials import rest_credentials

from .conftest import SECRET, ServerFactory
from .stunclient import TestClient, error_code, relayed_address, with_peer


def test_ipv4_and_ipv6_listeners_share_a_port_and_relay_in_their_family(turn_factory: ServerFactory) -> None:
    server = turn_factory.start(listen=["127.0.0.1", "::1"])
    sink = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sink.bind(("::1", 0))
    sink.settimeout(3)
    with sink, TestClient("127.0.0.1", server.port) as v4, TestClient("::1", server.port, tcp=True) as v6:
        assert v4.request(Method.BINDING).cls == Class.SUCCESS
        v6.login(*rest_credentials(SECRET, "v6", 600))
        response = v6.allocate()
        assert response.cls == Class.SUCCESS, error_code(response)
        assert relayed_address(response)[0] == "::1"
        # An IPv4 peer on an IPv6 relay: 443 Peer Address Family Mismatch.
        assert error_code(with_peer(v6, Method.CREATE_PERMISSION, "127.0.0.1", 9)) == 443
        target = sink.getsockname()[:2]
        channel = [(Attr.CHANNEL_NUMBER, b"\x40\x07\x00\x00")]
        assert with_peer(v6, Method.CHANNEL_BIND, target[0], target[1], channel).cls == Class.SUCCESS
        v6.send_raw(codec.pack_channel_data(0x4007, b"over six", pad=True))
        data, addr = sink.recvfrom(100)
        assert data == b"over six"
        assert addr[:2] == relayed_address(response)
        sink.sendto(b"back", addr[:2])
        assert codec.unpack_channel_data(v6.recv_raw()) == (0x4007, b"back")
        # IPv4 relay requested from an IPv6 listener: 440.
        v6b = TestClient("::1", server.port)
        with v6b:
            v6b.login(*rest_credentials(SECRET, "v6b", 600))
            assert error_code(v6b.allocate([(Attr.REQUESTED_ADDRESS_FAMILY, b"\x01\x00\x00\x00")])) == 440


def test_oversized_peer_datagram_is_dropped_not_raised(turn_factory: ServerFactory) -> None:
    server = turn_factory.start(listen=["::1"])
    peer = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    peer.bind(("::1", 0))
    with peer, TestClient("::1", server.port) as client:
        client.login(*rest_credentials(SECRET, "big", 600))
        response = client.allocate()
        assert response.cls == Class.SUCCESS
        host, port = peer.getsockname()[:2]
        assert with_peer(client, Method.CREATE_PERMISSION, host, port).cls == Class.SUCCESS
        peer.sendto(b"x" * 65527, relayed_address(response))
        peer.sendto(b"small", relayed_address(response))
        indication = codec.parse_message(client.recv_raw())
        assert indication.get(Attr.DATA) == b"small"
