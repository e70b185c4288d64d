"""Random and mutated packets thrown at a live server over UDP and TCP.

After every batch the server must still answer a Binding request, and the
test fails on any record the ``meshcall.turn`` loggers emit at ERROR or with
a traceback, at any level (they are captured down to DEBUG, and every record
is formatted, so a broken log call fails too); the ``turn_factory`` fixture
also fails it on an exception reaching the event loop. Every loop is bounded
in count and time.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshcall.turn import codec
from meshcall.turn.codec import Attr, Class, Message, Method
from meshcall.turn.credentials import rest_credentials

from .conftest import SECRET, ServerFactory
from .stunclient import TestClient

FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
BATCH_TIME_LIMIT = 5.0

ATTRIBUTE_TYPES = [int(a) for a in Attr] + [0x0000, 0x7FFF, 0xFFFF]
METHODS = [int(m) for m in Method] + [0x000, 0x002, 0xFFF]


def seeds(transaction_id: bytes, key: bytes, username: str, nonce: bytes) -> list[bytes]:
    """Valid messages of every kind, to be mutated."""
    auth = [(int(Attr.USERNAME), username.encode()), (int(Attr.REALM), b"meshcall"), (int(Attr.NONCE), nonce)]
    peer = (int(Attr.XOR_PEER_ADDRESS), codec.pack_xor_address("127.0.0.1", 9, transaction_id))
    return [
        Message(Method.BINDING, Class.REQUEST, transaction_id).encode(fingerprint=True),
        Message(Method.ALLOCATE, Class.REQUEST, transaction_id, [(Attr.REQUESTED_TRANSPORT, b"\x11\x00\x00\x00")] + auth).encode(key),
        Message(Method.CREATE_PERMISSION, Class.REQUEST, transaction_id, [peer] + auth).encode(key, fingerprint=True),
        Message(Method.CHANNEL_BIND, Class.REQUEST, transaction_id, [(Attr.CHANNEL_NUMBER, b"\x40\x00\x00\x00"), peer] + auth).encode(key),
        Message(Method.REFRESH, Class.REQUEST, transaction_id, [(Attr.LIFETIME, codec.pack_u32(600))] + auth).encode(key),
        Message(Method.SEND, Class.INDICATION, transaction_id, [peer, (Attr.DATA, b"payload")]).encode(),
        codec.pack_channel_data(0x4000, b"channel payload", pad=True),
    ]


@st.composite
def mutation(draw: st.DrawFn, seed_list: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seed_list)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "length"]))
        if kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif kind == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "length" and len(data) >= 4:
            data[2:4] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    return bytes(data)


@st.composite
def signed_soup(draw: st.DrawFn, key: bytes, username: str, nonce: bytes) -> bytes:
    """Well-signed requests with random attributes, to reach the handlers' depths."""
    transaction_id = draw(st.binary(min_size=12, max_size=12))
    message = Message(draw(st.sampled_from(METHODS)), draw(st.sampled_from(list(Class))), transaction_id)
    for _ in range(draw(st.integers(0, 5))):
        message.add(draw(st.sampled_from(ATTRIBUTE_TYPES)), draw(st.binary(max_size=24)))
    message.add(Attr.USERNAME, username.encode()).add(Attr.REALM, b"meshcall").add(Attr.NONCE, nonce)
    return message.encode(key, fingerprint=draw(st.booleans()))


class _Capture(logging.Handler):
    """Every record of the TURN server's loggers; the bad ones kept with their text."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.seen = 0
        self.problems: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen += 1
        try:
            text = self.format(record)  # formats the message and any traceback
        except Exception as exc:  # noqa: BLE001 - a log call that cannot format is a bug to report
            self.problems.append(f"unformattable record {record.msg!r} {record.args!r}: {exc!r}")
            return
        if record.levelno >= logging.ERROR or record.exc_info is not None or "Traceback" in text:
            self.problems.append(text)


@pytest.fixture
def turn_log() -> Iterator[_Capture]:
    logger = logging.getLogger("meshcall.turn")
    capture = _Capture()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(capture)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)


def garbage() -> st.SearchStrategy[bytes]:
    """Random bytes, runs of NUL, and NUL-laced STUN-looking headers."""
    return st.one_of(
        st.binary(max_size=120),
        st.integers(1, 200).map(lambda n: b"\x00" * n),
        st.binary(min_size=1, max_size=60).map(lambda b: b"\x00\x01\x00" + b + b"\x00" * 8),
        st.binary(max_size=40).map(lambda b: b"\x00\x03\x00\x10\x21\x12\xa4\x42" + b"\x00" * 12 + b),
    )


def still_answers(port: int) -> None:
    with TestClient("127.0.0.1", port, timeout=2.0) as probe:
        response = probe.request(Method.BINDING)
        assert response.cls == Class.SUCCESS


def test_fuzz_udp_and_tcp(turn_factory: ServerFactory, turn_log: _Capture) -> None:
    server = turn_factory.start(max_allocations_per_user=1000, max_allocations=1000, max_allocations_per_ip=1000)
    username, password = rest_credentials(SECRET, "fuzz", 600)
    # A client that holds an allocation, so mutated in-allocation packets reach deep paths.
    owner = TestClient("127.0.0.1", server.port, timeout=2.0)
    owner.login(username, password)
    assert owner.allocate().cls == Class.SUCCESS
    key = owner.key
    assert key is not None
    seed_list = seeds(os.urandom(12), key, username, owner.nonce)
    packets = st.lists(
        st.one_of(
            garbage(),
            mutation(seed_list),
            signed_soup(key, username, owner.nonce),
        ),
        min_size=1,
        max_size=15,
    )

    @FUZZ_SETTINGS
    @given(batch=packets, over_tcp=st.booleans())
    def run(batch: list[bytes], over_tcp: bool) -> None:
        started = time.monotonic()
        if over_tcp:
            with socket.create_connection(("127.0.0.1", server.port), timeout=2.0) as conn:
                for packet in batch:
                    try:
                        conn.sendall(packet)
                    except OSError:
                        break  # the server may close a connection on unframeable bytes
                    if time.monotonic() - started > BATCH_TIME_LIMIT:
                        break
        else:
            for packet in batch:
                owner.send_raw(packet)
                if time.monotonic() - started > BATCH_TIME_LIMIT:
                    break
        still_answers(server.port)

    try:
        run()
    finally:
        owner.close()
    assert turn_log.seen > 0, "the capture saw nothing: is it on the right logger?"
    assert not turn_log.problems, "the TURN server logged errors or tracebacks:\n" + "\n".join(turn_log.problems[:5])
