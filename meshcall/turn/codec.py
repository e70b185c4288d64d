"""STUN (RFC 8489) and TURN (RFC 8656) wire format: pure functions, no I/O.

Everything here takes and returns bytes. Parsers bounds-check every length
before slicing and raise :class:`StunError` (a :class:`ValueError`) with a
message that says what was wrong; they never ``assert`` on input.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass, field
from enum import IntEnum

# RFC 8489 §5: the fixed header is 20 bytes; the magic cookie is 0x2112A442.
HEADER_LENGTH = 20
MAGIC_COOKIE = 0x2112A442
MAGIC_COOKIE_BYTES = struct.pack("!I", MAGIC_COOKIE)
TRANSACTION_ID_LENGTH = 12
# RFC 8489 §14.7: FINGERPRINT is CRC-32 XOR 0x5354554e ("STUN").
FINGERPRINT_XOR = 0x5354554E
# RFC 8489 §14.5 / §14.6: HMAC-SHA1 is 20 bytes; HMAC-SHA256 32, truncatable to 16.
INTEGRITY_LENGTH = 20
INTEGRITY_SHA256_LENGTH = 32
INTEGRITY_SHA256_MIN_LENGTH = 16
# RFC 8656 §12 narrows channel numbers to 0x4000-0x4FFF, but RFC 5766 §11
# allowed up to 0x7FFF and deployed clients (coturn's among them) still pick
# from the whole range, as coturn's server accepts; so does this one.
CHANNEL_MIN = 0x4000
CHANNEL_MAX = 0x7FFF
CHANNEL_HEADER_LENGTH = 4
# RFC 8656 §14.7: REQUESTED-TRANSPORT protocol number for UDP.
TRANSPORT_UDP = 17

_STRUCT_HEADER = struct.Struct("!HHI12s")
_STRUCT_ATTR = struct.Struct("!HH")
_STRUCT_CHANNEL = struct.Struct("!HH")


class StunError(ValueError):
    """A message that is not well-formed STUN, TURN or ChannelData."""


class Class(IntEnum):
    """Message classes (RFC 8489 §5): the C1/C0 bits, already in place."""

    REQUEST = 0x000
    INDICATION = 0x010
    SUCCESS = 0x100
    ERROR = 0x110


class Method(IntEnum):
    """Methods of STUN (RFC 8489 §18.2) and TURN (RFC 8656 §17)."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009


class Attr(IntEnum):
    """Attribute types (RFC 8489 §18.3, RFC 8656 §18, RFC 8445 §16.1)."""

    MAPPED_ADDRESS = 0x0001
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    DATA = 0x0013
    REALM = 0x0014
    NONCE = 0x0015
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    EVEN_PORT = 0x0018
    REQUESTED_TRANSPORT = 0x0019
    DONT_FRAGMENT = 0x001A
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    RESERVATION_TOKEN = 0x0022
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    ADDITIONAL_ADDRESS_FAMILY = 0x8000
    ADDRESS_ERROR_CODE = 0x8001
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003
    ICMP = 0x8004
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A
    RESPONSE_ORIGIN = 0x802B
    OTHER_ADDRESS = 0x802C


# RFC 8489 §14: types 0x0000-0x7FFF are comprehension-required.
COMPREHENSION_OPTIONAL_MIN = 0x8000

# Reason phrases (RFC 8489 §14.8, RFC 8656 §18).
REASONS: dict[int, str] = {
    300: "Try Alternate",
    400: "Bad Request",
    401: "Unauthenticated",
    403: "Forbidden",
    420: "Unknown Attribute",
    437: "Allocation Mismatch",
    438: "Stale Nonce",
    440: "Address Family not Supported",
    441: "Wrong Credentials",
    442: "Unsupported Transport Protocol",
    443: "Peer Address Family Mismatch",
    486: "Allocation Quota Reached",
    500: "Server Error",
    508: "Insufficient Capacity",
}

# RFC 8656 §14.1 / §18.1 (REQUESTED-ADDRESS-FAMILY): 0x01 IPv4, 0x02 IPv6.
FAMILY_IPV4 = 0x01
FAMILY_IPV6 = 0x02


def message_type(method: int, cls: int) -> int:
    """Interleave the 12 method bits with the 2 class bits (RFC 8489 §5, Figure 3)."""
    if not 0 <= method <= 0xFFF:
        raise ValueError(f"method {method:#x} does not fit in 12 bits")
    return (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | cls


def split_message_type(value: int) -> tuple[int, Class]:
    """The inverse of :func:`message_type`: (method, class)."""
    method = (value & 0x000F) | ((value & 0x00E0) >> 1) | ((value & 0x3E00) >> 2)
    return method, Class(value & 0x0110)


@dataclass
class Message:
    """One STUN message.

    ``attributes`` keeps every attribute in order as (type, raw value). A parsed
    message also keeps its bytes in ``raw`` and the offsets of the integrity and
    fingerprint attributes, so that they can be verified afterwards.
    """

    method: int
    cls: Class
    transaction_id: bytes
    attributes: list[tuple[int, bytes]] = field(default_factory=list)
    raw: bytes = b""
    integrity_offset: int | None = None
    integrity_sha256_offset: int | None = None
    fingerprint_offset: int | None = None

    def get(self, attr: int) -> bytes | None:
        """The value of the first attribute of this type, or None."""
        for kind, value in self.attributes:
            if kind == attr:
                return value
        return None

    def get_all(self, attr: int) -> list[bytes]:
        """The values of every attribute of this type, in order."""
        return [value for kind, value in self.attributes if kind == attr]

    def add(self, attr: int, value: bytes) -> Message:
        """Append an attribute; returns self so calls can be chained."""
        self.attributes.append((attr, value))
        return self

    def encode(
        self,
        integrity_key: bytes | None = None,
        *,
        integrity_sha256_key: bytes | None = None,
        fingerprint: bool = False,
        padding: bytes = b"\x00",
    ) -> bytes:
        """Serialize; append MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and
        FINGERPRINT (in that order, RFC 8489 §14.5-14.7) when asked.

        Any such attributes already in ``attributes`` are not written twice.
        ``padding`` is the byte used to pad values to 4 bytes (RFC 8489 §14
        says any value; RFC 5769 uses spaces).
        """
        if len(self.transaction_id) != TRANSACTION_ID_LENGTH:
            raise ValueError("transaction id must be 12 bytes")
        if len(padding) != 1:
            raise ValueError("padding must be one byte")
        skip = {Attr.MESSAGE_INTEGRITY, Attr.MESSAGE_INTEGRITY_SHA256, Attr.FINGERPRINT}
        body = bytearray()
        for kind, value in self.attributes:
            if kind in skip:
                continue
            body += pack_attribute(kind, value, padding)
        kind = message_type(self.method, self.cls)
        head = struct.pack("!HH", kind, 0) + MAGIC_COOKIE_BYTES + self.transaction_id
        data = bytearray(head) + body
        if integrity_key is not None:
            struct.pack_into("!H", data, 2, len(data) - HEADER_LENGTH + 4 + INTEGRITY_LENGTH)
            mac = hmac.new(integrity_key, bytes(data), hashlib.sha1).digest()
            data += pack_attribute(Attr.MESSAGE_INTEGRITY, mac)
        if integrity_sha256_key is not None:
            struct.pack_into("!H", data, 2, len(data) - HEADER_LENGTH + 4 + INTEGRITY_SHA256_LENGTH)
            mac = hmac.new(integrity_sha256_key, bytes(data), hashlib.sha256).digest()
            data += pack_attribute(Attr.MESSAGE_INTEGRITY_SHA256, mac)
        if fingerprint:
            struct.pack_into("!H", data, 2, len(data) - HEADER_LENGTH + 8)
            data += pack_attribute(Attr.FINGERPRINT, struct.pack("!I", compute_fingerprint(data)))
        struct.pack_into("!H", data, 2, len(data) - HEADER_LENGTH)
        return bytes(data)


def pack_attribute(kind: int, value: bytes, padding: bytes = b"\x00") -> bytes:
    """Type, length, value and padding to a multiple of 4 (RFC 8489 §14)."""
    if len(value) > 0xFFFF:
        raise ValueError(f"attribute {kind:#06x} value of {len(value)} bytes is too long")
    pad = (-len(value)) % 4
    return _STRUCT_ATTR.pack(kind, len(value)) + value + padding * pad


def looks_like_stun(data: bytes) -> bool:
    """RFC 8489 §5: two top bits zero and the magic cookie in place."""
    return len(data) >= HEADER_LENGTH and data[0] < 0x40 and data[4:8] == MAGIC_COOKIE_BYTES


def parse_header(data: bytes) -> tuple[int, Class, int, bytes]:
    """(method, class, length, transaction id) of a STUN header (RFC 8489 §5)."""
    if len(data) < HEADER_LENGTH:
        raise StunError(f"STUN message of {len(data)} bytes is shorter than its 20-byte header")
    kind, length, cookie, transaction_id = _STRUCT_HEADER.unpack_from(data, 0)
    if kind & 0xC000:
        raise StunError("the two most significant bits of a STUN message must be zero")
    if cookie != MAGIC_COOKIE:
        raise StunError(f"magic cookie {cookie:#010x} is not 0x2112a442")
    if length % 4:
        raise StunError(f"STUN message length {length} is not a multiple of 4")
    method, cls = split_message_type(kind)
    return method, cls, length, transaction_id


def parse_message(data: bytes) -> Message:
    """Parse one STUN message that fills ``data`` exactly (RFC 8489 §6.3).

    Attributes after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and
    FINGERPRINT, and any after FINGERPRINT, are ignored (RFC 8489 §14.5-14.7).
    """
    method, cls, length, transaction_id = parse_header(data)
    if len(data) != HEADER_LENGTH + length:
        raise StunError(
            f"STUN length field says {length} bytes of attributes but {len(data) - HEADER_LENGTH} follow the header"
        )
    message = Message(method=method, cls=cls, transaction_id=transaction_id, raw=bytes(data))
    pos = HEADER_LENGTH
    end = HEADER_LENGTH + length
    closed_after_integrity = False
    while pos < end:
        if end - pos < 4:
            raise StunError(f"attribute header at offset {pos} is truncated")
        kind, size = _STRUCT_ATTR.unpack_from(data, pos)
        value_start = pos + 4
        value_end = value_start + size
        if value_end > end:
            raise StunError(f"attribute {kind:#06x} at offset {pos} claims {size} bytes, past the end of the message")
        padded_end = value_start + size + ((-size) % 4)
        if padded_end > end:
            raise StunError(f"attribute {kind:#06x} at offset {pos} is missing its padding")
        value = bytes(data[value_start:value_end])
        if message.fingerprint_offset is not None:
            pass  # RFC 8489 §14.7: nothing may follow FINGERPRINT; ignore it.
        elif kind == Attr.FINGERPRINT:
            if size != 4:
                raise StunError(f"FINGERPRINT is {size} bytes, not 4")
            message.fingerprint_offset = pos
            message.attributes.append((kind, value))
        elif kind == Attr.MESSAGE_INTEGRITY_SHA256 and message.integrity_sha256_offset is None:
            if size < INTEGRITY_SHA256_MIN_LENGTH or size > INTEGRITY_SHA256_LENGTH or size % 4:
                raise StunError(f"MESSAGE-INTEGRITY-SHA256 is {size} bytes, not 16 to 32 in steps of 4")
            message.integrity_sha256_offset = pos
            closed_after_integrity = True
            message.attributes.append((kind, value))
        elif closed_after_integrity:
            pass  # RFC 8489 §14.5-14.6: ignore everything else after integrity.
        elif kind == Attr.MESSAGE_INTEGRITY:
            if size != INTEGRITY_LENGTH:
                raise StunError(f"MESSAGE-INTEGRITY is {size} bytes, not 20")
            message.integrity_offset = pos
            closed_after_integrity = True
            message.attributes.append((kind, value))
        else:
            message.attributes.append((kind, value))
        pos = padded_end
    return message


# --- Integrity and fingerprint (RFC 8489 §14.5, §14.6, §14.7) -------------


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """RFC 8489 §9.2.2: MD5(username ":" OpaqueString(realm) ":" OpaqueString(password)).

    The REST passwords used here are plain base64 ASCII, which OpaqueString
    leaves unchanged, so no SASLprep/PRECIS step is applied.
    """
    text = f"{username}:{realm}:{password}".encode("utf-8")
    return hashlib.md5(text, usedforsecurity=False).digest()


def _hashed_prefix(raw: bytes, offset: int, value_length: int) -> bytes:
    """The message up to ``offset`` with its length field covering the attribute there."""
    prefix = bytearray(raw[:offset])
    struct.pack_into("!H", prefix, 2, offset - HEADER_LENGTH + 4 + value_length)
    return bytes(prefix)


def verify_integrity(message: Message, key: bytes) -> bool:
    """Check MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5). False when absent."""
    offset = message.integrity_offset
    if offset is None or offset + 4 + INTEGRITY_LENGTH > len(message.raw):
        return False
    expected = message.raw[offset + 4 : offset + 4 + INTEGRITY_LENGTH]
    mac = hmac.new(key, _hashed_prefix(message.raw, offset, INTEGRITY_LENGTH), hashlib.sha1).digest()
    return hmac.compare_digest(mac, expected)


def verify_integrity_sha256(message: Message, key: bytes) -> bool:
    """Check MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6), possibly truncated. False when absent."""
    offset = message.integrity_sha256_offset
    if offset is None or offset + 4 > len(message.raw):
        return False
    (size,) = struct.unpack_from("!H", message.raw, offset + 2)
    if offset + 4 + size > len(message.raw):
        return False
    expected = message.raw[offset + 4 : offset + 4 + size]
    mac = hmac.new(key, _hashed_prefix(message.raw, offset, size), hashlib.sha256).digest()
    return hmac.compare_digest(mac[:size], expected)


def compute_fingerprint(data_before: bytes | bytearray) -> int:
    """CRC-32 of the message before FINGERPRINT, XOR 0x5354554e (RFC 8489 §14.7).

    ``data_before`` must already have its length field covering the fingerprint.
    """
    return (binascii.crc32(data_before) ^ FINGERPRINT_XOR) & 0xFFFFFFFF


def verify_fingerprint(message: Message) -> bool:
    """Check FINGERPRINT (RFC 8489 §14.7). False when absent."""
    offset = message.fingerprint_offset
    if offset is None or offset + 8 > len(message.raw):
        return False
    value = int(struct.unpack_from("!I", message.raw, offset + 4)[0])
    return compute_fingerprint(_hashed_prefix(message.raw, offset, 4)) == value


# --- Addresses (RFC 8489 §14.1, §14.2) -------------------------------------


def _family_and_bytes(host: str) -> tuple[int, bytes]:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError as exc:
        raise ValueError(f"{host!r} is not an IP address") from exc
    if address.version == 4:
        return FAMILY_IPV4, address.packed
    return FAMILY_IPV6, address.packed


def _xor_mask(family: int, transaction_id: bytes) -> bytes:
    if len(transaction_id) != TRANSACTION_ID_LENGTH:
        raise ValueError("transaction id must be 12 bytes")
    if family == FAMILY_IPV4:
        return MAGIC_COOKIE_BYTES
    return MAGIC_COOKIE_BYTES + transaction_id


def pack_xor_address(host: str, port: int, transaction_id: bytes) -> bytes:
    """XOR-MAPPED-ADDRESS style value (RFC 8489 §14.2): port XOR the top 16
    bits of the cookie, address XOR the cookie (IPv4) or cookie + transaction id (IPv6)."""
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} out of range")
    family, packed = _family_and_bytes(host)
    mask = _xor_mask(family, transaction_id)
    xored = bytes(a ^ b for a, b in zip(packed, mask))
    return struct.pack("!BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + xored


def unpack_xor_address(value: bytes, transaction_id: bytes) -> tuple[str, int]:
    """(host, port) from an XOR-*-ADDRESS value (RFC 8489 §14.2)."""
    if len(value) < 4:
        raise StunError(f"XOR address attribute of {len(value)} bytes is too short")
    _, family, xport = struct.unpack_from("!BBH", value, 0)
    if family == FAMILY_IPV4:
        expected = 8
    elif family == FAMILY_IPV6:
        expected = 20
    else:
        raise StunError(f"unknown address family {family:#04x}")
    if len(value) != expected:
        raise StunError(f"XOR address attribute is {len(value)} bytes, not {expected}")
    mask = _xor_mask(family, transaction_id)
    packed = bytes(a ^ b for a, b in zip(value[4:], mask))
    host = str(ipaddress.ip_address(packed))
    return host, xport ^ (MAGIC_COOKIE >> 16)


# --- Small attribute values ------------------------------------------------


def pack_error_code(code: int, reason: str | None = None) -> bytes:
    """ERROR-CODE value (RFC 8489 §14.8): class in hundreds, number modulo 100."""
    if not 300 <= code <= 699:
        raise ValueError(f"error code {code} is not between 300 and 699")
    text = REASONS.get(code, "") if reason is None else reason
    return struct.pack("!HBB", 0, code // 100, code % 100) + text.encode("utf-8")[:763]


def unpack_error_code(value: bytes) -> tuple[int, str]:
    """(code, reason) from an ERROR-CODE value (RFC 8489 §14.8)."""
    if len(value) < 4:
        raise StunError(f"ERROR-CODE of {len(value)} bytes is too short")
    _, klass, number = struct.unpack_from("!HBB", value, 0)
    klass &= 0x07
    if not 3 <= klass <= 6 or number > 99:
        raise StunError(f"ERROR-CODE class {klass} number {number} out of range")
    return klass * 100 + number, value[4:].decode("utf-8", errors="replace")


def pack_unknown_attributes(kinds: list[int]) -> bytes:
    """UNKNOWN-ATTRIBUTES value (RFC 8489 §14.9)."""
    return b"".join(struct.pack("!H", kind) for kind in kinds)


def pack_u32(value: int) -> bytes:
    return struct.pack("!I", value)


def unpack_u32(value: bytes, name: str) -> int:
    """A 32-bit attribute such as LIFETIME (RFC 8656 §18.2)."""
    if len(value) != 4:
        raise StunError(f"{name} is {len(value)} bytes, not 4")
    return int(struct.unpack("!I", value)[0])


def pack_channel_number(channel: int) -> bytes:
    """CHANNEL-NUMBER value (RFC 8656 §18.1): the number and 16 reserved bits."""
    return struct.pack("!HH", channel, 0)


def unpack_channel_number(value: bytes) -> int:
    if len(value) != 4:
        raise StunError(f"CHANNEL-NUMBER is {len(value)} bytes, not 4")
    return int(struct.unpack_from("!H", value, 0)[0])


def unpack_requested_transport(value: bytes) -> int:
    """REQUESTED-TRANSPORT protocol number (RFC 8656 §18.7)."""
    if len(value) != 4:
        raise StunError(f"REQUESTED-TRANSPORT is {len(value)} bytes, not 4")
    return value[0]


def unpack_address_family(value: bytes) -> int:
    """REQUESTED-ADDRESS-FAMILY family (RFC 8656 §18.8)."""
    if len(value) != 4:
        raise StunError(f"REQUESTED-ADDRESS-FAMILY is {len(value)} bytes, not 4")
    return value[0]


# --- ChannelData (RFC 8656 §12.4) -------------------------------------------


def is_channel_data(data: bytes) -> bool:
    """The first two bits 0b01 mark ChannelData (RFC 8656 §12, RFC 5766 §11)."""
    return len(data) >= 1 and 0x40 <= data[0] <= 0x7F


def pack_channel_data(channel: int, payload: bytes, pad: bool = False) -> bytes:
    """ChannelData message; ``pad`` to 4 bytes as required over TCP (RFC 8656 §12.5)."""
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise ValueError(f"channel number {channel:#06x} not in 0x4000-0x7FFF")
    if len(payload) > 0xFFFF:
        raise ValueError("ChannelData payload longer than 65535 bytes")
    head = _STRUCT_CHANNEL.pack(channel, len(payload))
    if pad and len(payload) % 4:
        return head + payload + b"\x00" * ((-len(payload)) % 4)
    return head + payload


def unpack_channel_data(data: bytes) -> tuple[int, bytes]:
    """(channel, payload) of a ChannelData message; trailing padding is ignored."""
    if len(data) < CHANNEL_HEADER_LENGTH:
        raise StunError(f"ChannelData of {len(data)} bytes is shorter than its 4-byte header")
    channel, length = _STRUCT_CHANNEL.unpack_from(data, 0)
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise StunError(f"channel number {channel:#06x} not in 0x4000-0x7FFF")
    if CHANNEL_HEADER_LENGTH + length > len(data):
        raise StunError(f"ChannelData length {length} is longer than the {len(data) - 4} bytes that follow")
    return channel, bytes(data[CHANNEL_HEADER_LENGTH : CHANNEL_HEADER_LENGTH + length])


# --- Stream framing (RFC 8656 §12.5, RFC 6544 / RFC 8489 §6.2.2) ------------


def stream_frame_length(buffer: bytes | bytearray) -> int | None:
    """Length of the first message in a TCP byte stream, or None if more bytes are needed.

    STUN messages carry their own length (20 + Length); ChannelData is 4 +
    Length rounded up to a multiple of 4 over TCP (RFC 8656 §12.5). Anything
    else cannot be framed and raises :class:`StunError`.
    """
    if len(buffer) < 4:
        return None
    first = buffer[0]
    length = int(struct.unpack_from("!H", buffer, 2)[0])
    if first < 0x40:
        if length % 4:
            raise StunError(f"STUN message length {length} in stream is not a multiple of 4")
        return HEADER_LENGTH + length
    if first <= 0x7F:
        return CHANNEL_HEADER_LENGTH + length + ((-length) % 4)
    raise StunError(f"stream byte {first:#04x} starts neither STUN nor ChannelData")
