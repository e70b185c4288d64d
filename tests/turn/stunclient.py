"""A small blocking STUN/TURN client for tests, built on meshcall's codec."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

from meshcall.turn import codec
from meshcall.turn.codec import Attr, Class, Message, Method


class TestClient:
    """One UDP socket or TCP connection to a TURN server."""

    __test__ = False  # not a pytest class

    def __init__(self, host: str, port: int, *, tcp: bool = False, timeout: float = 3.0, source: str | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.tcp = tcp
        self.sock = socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        try:
            self.sock.settimeout(timeout)
            if source is not None:
                self.sock.bind((source, 0))
            self.sock.connect((host, port))
        except OSError:
            self.sock.close()
            raise
        self.buffer = b""
        self.key: bytes | None = None
        self.username = ""
        self.realm = b""
        self.nonce = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.send(data)

    def recv_raw(self) -> bytes:
        if not self.tcp:
            return self.sock.recv(70000)
        while True:
            size = codec.stream_frame_length(self.buffer)
            if size is not None and len(self.buffer) >= size:
                frame, self.buffer = self.buffer[:size], self.buffer[size:]
                return frame
            chunk = self.sock.recv(70000)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk

    def recv_message(self, transaction_id: bytes | None = None) -> Message:
        """The next STUN message (skipping ChannelData and other transactions)."""
        for _ in range(50):
            data = self.recv_raw()
            if codec.is_channel_data(data):
                continue
            message = codec.parse_message(data)
            if transaction_id is None or message.transaction_id == transaction_id:
                return message
        raise TimeoutError("no matching response")

    def request(
        self,
        method: int,
        attributes: Sequence[tuple[int, bytes]] | None = None,
        *,
        sign: bool = True,
        fingerprint: bool = True,
        sha256: bool = False,
    ) -> Message:
        """Send one request (signed with the current credentials if any) and return the response."""
        message = Message(method, Class.REQUEST, os.urandom(12), list(attributes or []))
        key = self.key if sign else None
        if key is not None:
            message.add(Attr.USERNAME, self.username.encode()).add(Attr.REALM, self.realm)
            message.add(Attr.NONCE, self.nonce)
        data = message.encode(
            None if sha256 else key, integrity_sha256_key=key if sha256 else None, fingerprint=fingerprint
        )
        self.send_raw(data)
        return self.recv_message(message.transaction_id)

    def login(self, username: str, password: str) -> None:
        """Learn REALM and NONCE from a 401 and keep the long-term key."""
        response = self.request(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, b"\x11\x00\x00\x00")], sign=False)
        assert error_code(response) == 401, response
        realm = response.get(Attr.REALM)
        nonce = response.get(Attr.NONCE)
        assert realm is not None and nonce is not None
        self.realm, self.nonce, self.username = realm, nonce, username
        self.key = codec.long_term_key(username, realm.decode(), password)

    def allocate(self, extra: Sequence[tuple[int, bytes]] | None = None) -> Message:
        return self.request(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, b"\x11\x00\x00\x00")] + list(extra or []))


def error_code(message: Message) -> int | None:
    value = message.get(Attr.ERROR_CODE)
    if value is None:
        return None
    return codec.unpack_error_code(value)[0]


def relayed_address(message: Message) -> tuple[str, int]:
    value = message.get(Attr.XOR_RELAYED_ADDRESS)
    assert value is not None, f"no XOR-RELAYED-ADDRESS in {message}"
    return codec.unpack_xor_address(value, message.transaction_id)




def with_peer(client: TestClient, method: int, host: str, port: int, extra: Sequence[tuple[int, bytes]] | None = None) -> Message:
    """A signed request carrying XOR-PEER-ADDRESS (encoded against its own transaction id)."""
    transaction_id = os.urandom(12)
    message = Message(method, Class.REQUEST, transaction_id)
    message.add(Attr.XOR_PEER_ADDRESS, codec.pack_xor_address(host, port, transaction_id))
    for kind, value in extra or []:
        message.add(kind, value)
    assert client.key is not None
    message.add(Attr.USERNAME, client.username.encode()).add(Attr.REALM, client.realm).add(Attr.NONCE, client.nonce)
    client.send_raw(message.encode(client.key, fingerprint=True))
    return client.recv_message(transaction_id)
