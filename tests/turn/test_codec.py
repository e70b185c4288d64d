"""The STUN/TURN codec against the RFC 5769 test vectors, byte for byte."""

from __future__ import annotations

import pytest

from meshcall.turn import codec
from meshcall.turn.codec import Attr, Class, Message, Method, StunError


def hexbytes(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


TRANSACTION_ID = hexbytes("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae")
SHORT_TERM_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"

# RFC 5769 §2.1 Sample Request.
SAMPLE_REQUEST = hexbytes(
    """
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf
    """
)

# RFC 5769 §2.2 Sample IPv4 Response.
SAMPLE_IPV4_RESPONSE = hexbytes(
    """
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96
    """
)

# RFC 5769 §2.3 Sample IPv6 Response.
SAMPLE_IPV6_RESPONSE = hexbytes(
    """
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c
    """
)

# RFC 5769 §2.4 Sample Request with Long-Term Authentication.
SAMPLE_LONG_TERM_REQUEST = hexbytes(
    """
    00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66
    """
)


def test_sample_request_parses_verifies_and_reencodes() -> None:
    message = codec.parse_message(SAMPLE_REQUEST)
    assert message.method == Method.BINDING
    assert message.cls == Class.REQUEST
    assert message.transaction_id == TRANSACTION_ID
    assert message.get(Attr.SOFTWARE) == b"STUN test client"
    assert message.get(Attr.PRIORITY) == hexbytes("6e 00 01 ff")
    assert message.get(Attr.ICE_CONTROLLED) == hexbytes("93 2f f9 b1 51 26 3b 36")
    assert message.get(Attr.USERNAME) == b"evtj:h6vY"
    assert codec.verify_integrity(message, SHORT_TERM_PASSWORD)
    assert not codec.verify_integrity(message, b"wrong")
    assert codec.verify_fingerprint(message)
    again = Message(Method.BINDING, Class.REQUEST, TRANSACTION_ID)
    again.add(Attr.SOFTWARE, b"STUN test client").add(Attr.PRIORITY, hexbytes("6e0001ff"))
    again.add(Attr.ICE_CONTROLLED, hexbytes("932ff9b151263b36")).add(Attr.USERNAME, b"evtj:h6vY")
    encoded = again.encode(SHORT_TERM_PASSWORD, fingerprint=True, padding=b" ")
    assert encoded == SAMPLE_REQUEST


def test_sample_ipv4_response() -> None:
    message = codec.parse_message(SAMPLE_IPV4_RESPONSE)
    assert (message.method, message.cls) == (Method.BINDING, Class.SUCCESS)
    assert message.get(Attr.SOFTWARE) == b"test vector"
    value = message.get(Attr.XOR_MAPPED_ADDRESS)
    assert value is not None
    assert codec.unpack_xor_address(value, TRANSACTION_ID) == ("192.0.2.1", 32853)
    assert codec.pack_xor_address("192.0.2.1", 32853, TRANSACTION_ID) == value
    assert codec.verify_integrity(message, SHORT_TERM_PASSWORD)
    assert codec.verify_fingerprint(message)
    again = Message(Method.BINDING, Class.SUCCESS, TRANSACTION_ID)
    again.add(Attr.SOFTWARE, b"test vector").add(Attr.XOR_MAPPED_ADDRESS, value)
    assert again.encode(SHORT_TERM_PASSWORD, fingerprint=True, padding=b" ") == SAMPLE_IPV4_RESPONSE


def test_sample_ipv6_response() -> None:
    message = codec.parse_message(SAMPLE_IPV6_RESPONSE)
    value = message.get(Attr.XOR_MAPPED_ADDRESS)
    assert value is not None
    host = "2001:db8:1234:5678:11:2233:4455:6677"
    assert codec.unpack_xor_address(value, TRANSACTION_ID) == (host, 32853)
    assert codec.pack_xor_address(host, 32853, TRANSACTION_ID) == value
    assert codec.verify_integrity(message, SHORT_TERM_PASSWORD)
    assert codec.verify_fingerprint(message)
    again = Message(Method.BINDING, Class.SUCCESS, TRANSACTION_ID)
    again.add(Attr.SOFTWARE, b"test vector").add(Attr.XOR_MAPPED_ADDRESS, value)
    assert again.encode(SHORT_TERM_PASSWORD, fingerprint=True, padding=b" ") == SAMPLE_IPV6_RESPONSE


def test_sample_long_term_request() -> None:
    message = codec.parse_message(SAMPLE_LONG_TERM_REQUEST)
    username = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"  # "matorikkusu" in katakana
    assert message.get(Attr.USERNAME) == username.encode("utf-8")
    assert message.get(Attr.NONCE) == b"f//499k954d6OL34oL9FSTvy64sA"
    assert message.get(Attr.REALM) == b"example.org"
    assert message.fingerprint_offset is None
    key = codec.long_term_key(username, "example.org", "TheMatrIX")
    assert codec.verify_integrity(message, key)
    assert not codec.verify_integrity(message, codec.long_term_key(username, "example.org", "thematrix"))
    again = Message(Method.BINDING, Class.REQUEST, message.transaction_id)
    again.add(Attr.USERNAME, username.encode("utf-8")).add(Attr.NONCE, b"f//499k954d6OL34oL9FSTvy64sA")
    again.add(Attr.REALM, b"example.org")
    assert again.encode(key) == SAMPLE_LONG_TERM_REQUEST


def test_message_type_bits() -> None:
    cases = [
        (Method.BINDING, Class.REQUEST, 0x0001),
        (Method.BINDING, Class.SUCCESS, 0x0101),
        (Method.ALLOCATE, Class.ERROR, 0x0113),
        (Method.SEND, Class.INDICATION, 0x0016),
        (Method.DATA, Class.INDICATION, 0x0017),
        (Method.CHANNEL_BIND, Class.REQUEST, 0x0009),
        (0xFFF, Class.ERROR, 0x3FFF),
    ]
    for method, cls, kind in cases:
        assert codec.message_type(method, cls) == kind
        assert codec.split_message_type(kind) == (method, cls)


def test_integrity_sha256_round_trip_and_truncation() -> None:
    key = codec.long_term_key("1:u", "meshcall", "pw")
    message = Message(Method.ALLOCATE, Class.REQUEST, b"\x01" * 12).add(Attr.REALM, b"meshcall")
    data = message.encode(key, integrity_sha256_key=key, fingerprint=True)
    parsed = codec.parse_message(data)
    assert codec.verify_integrity(parsed, key)
    assert codec.verify_integrity_sha256(parsed, key)
    assert codec.verify_fingerprint(parsed)
    assert not codec.verify_integrity_sha256(parsed, b"other")
    only_sha = codec.parse_message(message.encode(None, integrity_sha256_key=key))
    assert only_sha.integrity_offset is None
    assert codec.verify_integrity_sha256(only_sha, key)


def test_attributes_after_integrity_are_ignored() -> None:
    key = b"k"
    data = bytearray(Message(Method.BINDING, Class.REQUEST, b"\x02" * 12).encode(key))
    data += codec.pack_attribute(Attr.DATA, b"evil")
    data[2:4] = (len(data) - 20).to_bytes(2, "big")
    parsed = codec.parse_message(bytes(data))
    assert parsed.get(Attr.DATA) is None
    assert codec.verify_integrity(parsed, key)


def test_error_code_and_channel_data() -> None:
    assert codec.unpack_error_code(codec.pack_error_code(438)) == (438, "Stale Nonce")
    assert codec.unpack_error_code(codec.pack_error_code(508, "")) == (508, "")
    with pytest.raises(ValueError):
        codec.pack_error_code(200)
    assert codec.pack_channel_data(0x4001, b"hello") == b"\x40\x01\x00\x05hello"
    padded = codec.pack_channel_data(0x4FFF, b"hello", pad=True)
    assert padded == b"\x4f\xff\x00\x05hello\x00\x00\x00"
    assert codec.unpack_channel_data(padded) == (0x4FFF, b"hello")
    assert codec.stream_frame_length(padded) == 12
    assert codec.stream_frame_length(b"\x40\x00") is None
    assert codec.stream_frame_length(SAMPLE_REQUEST) == len(SAMPLE_REQUEST)
    with pytest.raises(ValueError):
        codec.pack_channel_data(0x3FFF, b"")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "shorter than its 20-byte header"),
        (SAMPLE_REQUEST[:19], "shorter than its 20-byte header"),
        (SAMPLE_REQUEST[:-4], "follow the header"),
        (b"\x80" + SAMPLE_REQUEST[1:], "two most significant bits"),
        (SAMPLE_REQUEST[:4] + b"\x00\x00\x00\x00" + SAMPLE_REQUEST[8:], "magic cookie"),
        (SAMPLE_REQUEST[:2] + b"\x00\x57" + SAMPLE_REQUEST[4:], "multiple of 4"),
        (SAMPLE_REQUEST[:22] + b"\x00\x40" + SAMPLE_REQUEST[24:], "past the end"),
        (SAMPLE_REQUEST[:2] + b"\x00\x02" + SAMPLE_REQUEST[4:22], "multiple of 4"),
    ],
)
def test_malformed_messages_raise_precise_errors(data: bytes, fragment: str) -> None:
    with pytest.raises(StunError, match=fragment):
        codec.parse_message(data)


def test_malformed_values_raise() -> None:
    with pytest.raises(StunError):
        codec.unpack_xor_address(b"\x00\x03\x00\x00\x01\x02\x03\x04", TRANSACTION_ID)
    with pytest.raises(StunError):
        codec.unpack_xor_address(b"\x00\x01\x00\x00\x01\x02\x03", TRANSACTION_ID)
    with pytest.raises(StunError):
        codec.unpack_channel_data(b"\x40\x00\x00\x09abc")
    with pytest.raises(StunError):
        codec.unpack_channel_data(b"\x80\x00\x00\x00")
    with pytest.raises(StunError):
        codec.stream_frame_length(b"\xff\x00\x00\x00")
