"""Allocate through our own TURN server, the way a browser would, and say whether it works."""

from __future__ import annotations

import asyncio
import os
import socket

from . import codec
from .codec import Attr, Class, Message, Method, StunError
from .credentials import rest_credentials

SELF_CHECK_USER = "self-check"
ATTEMPTS = 4
RETRANSMIT_AFTER = 0.5
TOTAL_TIMEOUT = 8.0


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.queue.full():
            self.queue.put_nowait(data)


class _Session:
    """A UDP TURN client just big enough for the check."""

    def __init__(self, transport: asyncio.DatagramTransport, inbox: _Inbox) -> None:
        self.transport = transport
        self.inbox = inbox
        self.key: bytes | None = None
        self.auth: list[tuple[int, bytes]] = []

    async def request(self, method: int, attributes: list[tuple[int, bytes]], transaction_id: bytes | None = None) -> Message:
        tid = transaction_id or os.urandom(12)
        message = Message(method, Class.REQUEST, tid, list(attributes) + self.auth)
        data = message.encode(self.key, fingerprint=True)
        for _ in range(ATTEMPTS):
            self.transport.sendto(data)
            try:
                return await asyncio.wait_for(self._response(tid), RETRANSMIT_AFTER)
            except asyncio.TimeoutError:
                continue
        raise TimeoutError("no answer")

    async def _response(self, transaction_id: bytes) -> Message:
        while True:
            data = await self.inbox.queue.get()
            try:
                message = codec.parse_message(data)
            except StunError:
                continue
            if message.transaction_id == transaction_id and message.cls in (Class.SUCCESS, Class.ERROR):
                return message


def _error_text(message: Message) -> str:
    value = message.get(Attr.ERROR_CODE)
    if value is None:
        return "an error without ERROR-CODE"
    try:
        code, reason = codec.unpack_error_code(value)
    except StunError:
        return "a malformed ERROR-CODE"
    return f"{code} {reason}".strip()


async def _check(host: str, port: int, secret: bytes) -> tuple[bool, str]:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    transport, inbox = await loop.create_datagram_endpoint(_Inbox, remote_addr=(host, port), family=family)
    sink, sink_inbox = await loop.create_datagram_endpoint(_Inbox, local_addr=(host, 0), family=family)
    session = _Session(transport, inbox)
    try:
        udp = [(int(Attr.REQUESTED_TRANSPORT), bytes([codec.TRANSPORT_UDP, 0, 0, 0]))]
        try:
            challenge = await session.request(Method.ALLOCATE, udp)
        except TimeoutError:
            return False, f"TURN server at {host} port {port} did not answer over UDP"
        realm = challenge.get(Attr.REALM)
        nonce = challenge.get(Attr.NONCE)
        if challenge.cls != Class.ERROR or realm is None or nonce is None:
            return False, f"TURN server at {host} port {port} did not ask for credentials: {_error_text(challenge)}"
        username, password = rest_credentials(secret, SELF_CHECK_USER, 120)
        session.key = codec.long_term_key(username, realm.decode("utf-8", "replace"), password)
        session.auth = [(int(Attr.USERNAME), username.encode()), (int(Attr.REALM), realm), (int(Attr.NONCE), nonce)]
        response = await session.request(Method.ALLOCATE, udp + [(int(Attr.LIFETIME), codec.pack_u32(60))])
        if response.cls != Class.SUCCESS:
            return False, f"TURN server at {host} port {port} refused an allocation: {_error_text(response)}"
        if not codec.verify_integrity(response, session.key):
            return False, f"TURN server at {host} port {port} answered without valid MESSAGE-INTEGRITY"
        value = response.get(Attr.XOR_RELAYED_ADDRESS)
        if value is None:
            return False, f"TURN server at {host} port {port} gave no relayed address"
        relayed_host, relayed_port = codec.unpack_xor_address(value, response.transaction_id)
        relayed = f"[{relayed_host}]:{relayed_port}" if ":" in relayed_host else f"{relayed_host}:{relayed_port}"
        note = await _try_relay(session, sink, sink_inbox)
        try:
            await session.request(Method.REFRESH, [(int(Attr.LIFETIME), codec.pack_u32(0))])
        except TimeoutError:
            pass
        return True, f"relay works: allocated {relayed}{note}"
    finally:
        transport.close()
        sink.close()


async def _try_relay(session: _Session, sink: asyncio.DatagramTransport, sink_inbox: _Inbox) -> str:
    """Send one packet through the relay to a local socket; a short note on how it went."""
    sink_host, sink_port = sink.get_extra_info("sockname")[:2]
    tid = os.urandom(12)
    peer = [(int(Attr.XOR_PEER_ADDRESS), codec.pack_xor_address(sink_host, sink_port, tid))]
    response = await session.request(Method.CREATE_PERMISSION, peer, tid)
    if response.cls != Class.SUCCESS:
        return f" (relaying to {sink_host} not tried: {_error_text(response)})"
    send_tid = os.urandom(12)
    indication = Message(Method.SEND, Class.INDICATION, send_tid)
    indication.add(Attr.XOR_PEER_ADDRESS, codec.pack_xor_address(sink_host, sink_port, send_tid))
    indication.add(Attr.DATA, b"meshcall self-check")
    session.transport.sendto(indication.encode())
    try:
        data = await asyncio.wait_for(sink_inbox.queue.get(), 1.0)
    except asyncio.TimeoutError:
        return ", but a packet sent through it did not arrive"
    return ", a packet went through it" if data == b"meshcall self-check" else ", but an unexpected packet arrived"


async def self_check(host: str, port: int, secret: bytes) -> tuple[bool, str]:
    """Allocate through the TURN server at host:port with REST credentials.

    Returns (ok, one line for a human), e.g. ``(True, "relay works:
    allocated 198.18.0.1:49160, a packet went through it")``. Never raises
    for network trouble: that is reported in the message.
    """
    try:
        return await asyncio.wait_for(_check(host, port, secret), TOTAL_TIMEOUT)
    except asyncio.TimeoutError:
        return False, f"TURN self-check against {host} port {port} timed out"
    except (OSError, StunError, ValueError) as exc:
        return False, f"TURN self-check against {host} port {port} failed: {exc}"
