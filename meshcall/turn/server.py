"""The TURN server on asyncio: listeners, relay sockets, and request handling.

Transports decode and hand over to :class:`TurnServer`, which checks
credentials, asks the :class:`~meshcall.turn.allocations.AllocationTable`
what is allowed, and encodes the answer. Nothing raised while handling a
packet leaves the handler: bad input gets an RFC error response or is dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass
from typing import cast

from . import codec
from .allocations import DEFAULT_LIFETIME, Address, Allocation, AllocationTable, FiveTuple
from .codec import Attr, Class, Message, Method, StunError
from .credentials import rest_password, username_expired, username_user
from .policy import TokenBucket, normalize_ip, peer_ip_refusal, peer_refusal

__all__ = ["TurnConfig", "TurnServer"]

logger = logging.getLogger(__name__)

# Attributes this server understands in requests; any other comprehension-required
# attribute gets 420 (RFC 8489 §6.3.1.1).
KNOWN_ATTRIBUTES = frozenset(int(a) for a in Attr if a < codec.COMPREHENSION_OPTIONAL_MIN)
# RFC 8656 §7.2: a reservation (EVEN-PORT with R) is kept about 30 s.
RESERVATION_LIFETIME = 30.0
# How many relay ports to try before answering 508.
PORT_ATTEMPTS = 64
# A TCP client whose unsent output exceeds this gets relayed data dropped.
TCP_WRITE_LIMIT = 1_000_000
SWEEP_INTERVAL = 1.0
# TCP connections accepted at once (each may hold one allocation), and how
# long one may stay open without an allocation.
MAX_TCP_CONNECTIONS = 1000
TCP_IDLE_WITHOUT_ALLOCATION = 60.0
# Socket buffers asked for on UDP sockets (the kernel caps them at
# net.core.rmem_max / wmem_max), so that a scheduling hiccup does not drop a
# burst of media: the listeners carry every client's traffic, a relay one's.
LISTENER_BUFFER_BYTES = 4 << 20
RELAY_BUFFER_BYTES = 512 << 10
_CHANNEL_HEADER = struct.Struct("!HH")
# Peer datagrams larger than this cannot be framed back to the client (a Data
# indication with an IPv6 XOR-PEER-ADDRESS must fit a 16-bit length): dropped.
MAX_RELAY_PAYLOAD = 0xFFFF - 32


@dataclass
class TurnConfig:
    """Settings of the TURN server; see the module docstring of :mod:`meshcall.turn`."""

    listen: list[str]
    port: int = 3478
    secret: bytes = b""
    realm: str = "meshcall"
    relay_min_port: int = 49160
    relay_max_port: int = 49999
    allow_loopback_peers: bool = False
    forbidden_ports: frozenset[int] = frozenset()
    max_allocations: int = 200
    max_allocations_per_user: int = 10
    max_lifetime: int = 3600
    bandwidth_per_allocation: int = 2_000_000  # bytes/s
    nonce_lifetime: int = 600


@dataclass
class _Auth:
    username: str
    user: str
    key: bytes
    use_sha256: bool


@dataclass
class _Reservation:
    sock: socket.socket
    address: Address
    expires: float


class _UdpLink:
    """A client reached over one UDP listener."""

    __slots__ = ("transport", "client", "local", "stream")

    def __init__(self, transport: asyncio.DatagramTransport, client: Address, local: Address) -> None:
        self.transport = transport
        self.client = client
        self.local = local
        self.stream = False

    @property
    def five_tuple(self) -> FiveTuple:
        return ("udp", self.client, self.local)

    def send(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.sendto(data, self.client)


class _TcpLink:
    """A client on one TCP connection (RFC 8656 §3.1, RFC 6544 framing)."""

    __slots__ = ("transport", "client", "local", "stream", "opened")

    def __init__(self, transport: asyncio.Transport, client: Address, local: Address) -> None:
        self.transport = transport
        self.client = client
        self.local = local
        self.stream = True
        self.opened = time.monotonic()

    @property
    def five_tuple(self) -> FiveTuple:
        return ("tcp", self.client, self.local)

    def send(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size() > TCP_WRITE_LIMIT:
            return
        self.transport.write(data)


_Link = _UdpLink | _TcpLink


def _addr2(addr: tuple) -> Address:  # type: ignore[type-arg]
    return (str(addr[0]), int(addr[1]))


class _ListenerProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: TurnServer, local: Address) -> None:
        self.server = server
        self.local = local
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
        if self.transport is None:
            return
        client = addr if len(addr) == 2 else _addr2(addr)
        if data and 0x40 <= data[0] <= 0x7F:
            # The hot path: ChannelData needs only the allocation, not a link.
            allocation = self.server._table.by_five_tuple.get(("udp", client, self.local))
            self.server._on_channel_data(allocation, data)
            return
        self.server._on_client_packet(_UdpLink(self.transport, client, self.local), data)

    def error_received(self, exc: Exception) -> None:
        logger.debug("TURN: UDP listener %s: %s", self.local, exc)


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, server: TurnServer, local: Address) -> None:
        self.server = server
        self.local = local
        self.buffer = bytearray()
        self.link: _TcpLink | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self.server._tcp_links) >= MAX_TCP_CONNECTIONS:
            logger.warning("TURN: refusing a TCP connection: %d open already", MAX_TCP_CONNECTIONS)
            transport.close()
            return
        peer = transport.get_extra_info("peername")
        self.link = _TcpLink(cast(asyncio.Transport, transport), _addr2(peer), self.local)
        self.server._tcp_links.add(self.link)

    def data_received(self, data: bytes) -> None:
        link = self.link
        if link is None:
            return
        self.buffer += data
        while True:
            try:
                size = codec.stream_frame_length(self.buffer)
            except StunError as exc:
                logger.info("TURN: closing TCP connection from %s: %s", link.client, exc)
                link.transport.close()
                self.buffer.clear()
                return
            if size is None or len(self.buffer) < size:
                return
            frame = bytes(self.buffer[:size])
            del self.buffer[:size]
            self.server._on_client_packet(link, frame)
            if link.transport.is_closing():
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link is not None:
            self.server._tcp_links.discard(self.link)
            self.server._on_tcp_closed(self.link)


class _RelayProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: TurnServer, allocation: Allocation) -> None:
        self.server = server
        self.allocation = allocation

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
        self.server._on_peer_packet(self.allocation, data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from peers (RFC 8656 §11.1 ICMP attribute not implemented).
        logger.debug("TURN: relay %s: %s", self.allocation.relayed, exc)


class TurnServer:
    """A STUN/TURN server bound to concrete addresses, UDP and TCP on each."""

    def __init__(self, config: TurnConfig) -> None:
        if config.relay_min_port > config.relay_max_port:
            raise ValueError("relay_min_port is above relay_max_port")
        self.config = config
        self._table = AllocationTable(config.max_allocations, config.max_allocations_per_user)
        self._nonce_key = os.urandom(20)
        self._port = 0
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.Server] = []
        self._tcp_links: set[_TcpLink] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reservations: dict[bytes, _Reservation] = {}
        self._own_addresses: frozenset[str] = frozenset()
        self._forbidden_ports: frozenset[int] = config.forbidden_ports
        self._sweeper: asyncio.Task[None] | None = None
        self._counters: Counter[str] = Counter()
        self._random = random.Random()

    # --- lifecycle -----------------------------------------------------------

    @property
    def port(self) -> int:
        """The port bound for UDP and TCP on every listen address."""
        return self._port

    async def start(self) -> None:
        """Bind every listener; raise OSError naming the address if one is taken."""
        if not self.config.listen:
            raise ValueError("TurnConfig.listen is empty")
        attempts = 20 if self.config.port == 0 else 1
        for attempt in range(attempts):
            try:
                await self._bind_all(self.config.port)
                break
            except OSError:
                await self._close_listeners()
                if attempt == attempts - 1:
                    raise
        own = {str(a) for a in (normalize_ip(h) for h in self.config.listen) if a is not None}
        own |= _local_addresses()
        self._own_addresses = frozenset(own)
        self._forbidden_ports = frozenset(self.config.forbidden_ports) | {self._port}
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        logger.info(
            "TURN: listening on %s port %d (UDP and TCP), relay ports %d-%d",
            ", ".join(self.config.listen),
            self._port,
            self.config.relay_min_port,
            self.config.relay_max_port,
        )

    async def _bind_all(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        for host in self.config.listen:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            udp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                if family == socket.AF_INET6:
                    udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                _enlarge_buffers(udp, LISTENER_BUFFER_BYTES)
                udp.bind((host, port))
            except OSError as exc:
                udp.close()
                raise OSError(exc.errno, f"TURN: cannot bind UDP {host} port {port}: {exc.strerror}") from exc
            if port == 0:
                port = udp.getsockname()[1]
            local = (host, port)
            transport, _ = await loop.create_datagram_endpoint(
                lambda local=local: _ListenerProtocol(self, local), sock=udp  # type: ignore[misc]
            )
            self._udp.append(transport)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                tcp.bind((host, port))
                tcp.listen(128)
            except OSError as exc:
                tcp.close()
                raise OSError(exc.errno, f"TURN: cannot bind TCP {host} port {port}: {exc.strerror}") from exc
            server = await loop.create_server(lambda local=local: _TcpProtocol(self, local), sock=tcp)  # type: ignore[misc]
            self._tcp.append(server)
        self._port = port

    async def _close_listeners(self) -> None:
        for transport in self._udp:
            transport.close()
        self._udp.clear()
        for server in self._tcp:
            server.close()
        for server in self._tcp:
            await server.wait_closed()
        self._tcp.clear()

    async def stop(self) -> None:
        """Close listeners, TCP connections, relays and reservations."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass
            self._sweeper = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for allocation in list(self._table.by_five_tuple.values()):
            self._delete(allocation, "server stopping")
        for reservation in self._reservations.values():
            reservation.sock.close()
        self._reservations.clear()
        for link in list(self._tcp_links):
            link.transport.close()
        await self._close_listeners()
        await asyncio.sleep(0)  # let transports finish closing
        logger.info("TURN: stopped")

    def stats(self) -> dict[str, int]:
        """Allocations now and in total, packets relayed and dropped, requests, errors."""
        result = {
            "allocations": len(self._table),
            "tcp_connections": len(self._tcp_links),
            "allocations_total": 0,
            "packets_relayed": 0,
            "packets_to_peers": 0,
            "packets_to_clients": 0,
            "bytes_relayed": 0,
            "packets_dropped": 0,
            "requests": 0,
            "errors": 0,
        }
        result.update(self._counters)
        for allocation in self._table.by_five_tuple.values():
            result["packets_to_peers"] += allocation.packets_to_peer
            result["packets_to_clients"] += allocation.packets_to_client
            result["bytes_relayed"] += allocation.bytes_relayed
        result["packets_relayed"] = result["packets_to_peers"] + result["packets_to_clients"]
        return result

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            for allocation in self._table.expired(now):
                self._delete(allocation, "lifetime expired")
            for allocation in self._table.by_five_tuple.values():
                allocation.expire_children(now)
            for token in [t for t, r in self._reservations.items() if r.expires <= now]:
                self._reservations.pop(token).sock.close()
            for link in list(self._tcp_links):
                idle = now - link.opened > TCP_IDLE_WITHOUT_ALLOCATION
                if idle and link.five_tuple not in self._table.by_five_tuple and link.five_tuple not in self._table.pending:
                    logger.debug("TURN: closing TCP connection from %s: no allocation", link.client)
                    link.transport.close()

    # --- packets from clients -----------------------------------------------

    def _on_client_packet(self, link: _Link, data: bytes) -> None:
        try:
            if data and 0x40 <= data[0] <= 0x7F:
                self._on_channel_data(self._table.by_five_tuple.get(link.five_tuple), data)
            else:
                self._on_stun(link, data)
        except Exception:  # noqa: BLE001 - the last line of defence; logged loudly
            logger.exception("TURN: internal error on a packet from %s", link.client)

    def _on_channel_data(self, allocation: Allocation | None, data: bytes) -> None:
        # RFC 8656 §12.6: ChannelData from the client goes to the bound peer.
        try:
            if allocation is None or allocation.relay is None or len(data) < 4:
                self._counters["packets_dropped"] += 1
                return
            channel, length = _CHANNEL_HEADER.unpack_from(data, 0)
            now = time.monotonic()
            peer = allocation.channel_peer(channel, now)
            if peer is None or 4 + length > len(data) or not allocation.has_permission(peer[0], now):
                self._counters["packets_dropped"] += 1
                return
            if not allocation.bucket.take(length, now):
                self._counters["packets_dropped"] += 1
                return
            allocation.relay.sendto(data[4 : 4 + length], peer)
            allocation.packets_to_peer += 1
            allocation.bytes_relayed += length
        except Exception:  # noqa: BLE001 - the last line of defence; logged loudly
            logger.exception("TURN: internal error on ChannelData")

    def _on_stun(self, link: _Link, data: bytes) -> None:
        try:
            message = codec.parse_message(data)
        except StunError as exc:
            self._on_malformed(link, data, exc)
            return
        if message.fingerprint_offset is not None and not codec.verify_fingerprint(message):
            logger.debug("TURN: dropping message with a bad FINGERPRINT from %s", link.client)
            return  # RFC 8489 §7.3: discard
        if message.cls == Class.INDICATION:
            if message.method == Method.SEND:
                self._on_send(link, message)
            return
        if message.cls != Class.REQUEST:
            return
        self._counters["requests"] += 1
        unknown = sorted({k for k, _ in message.attributes if k < 0x8000 and k not in KNOWN_ATTRIBUTES})
        if unknown:
            self._error(link, message, 420, None, extra=[(Attr.UNKNOWN_ATTRIBUTES, codec.pack_unknown_attributes(unknown))])
            return
        if message.method == Method.BINDING:
            self._on_binding(link, message)
            return
        if message.method not in (Method.ALLOCATE, Method.REFRESH, Method.CREATE_PERMISSION, Method.CHANNEL_BIND):
            self._error(link, message, 400, None, reason="unknown method")
            return
        auth = self._authenticate(link, message)
        if auth is None:
            return
        try:
            if message.method == Method.ALLOCATE:
                self._on_allocate(link, message, auth)
            elif message.method == Method.REFRESH:
                self._on_refresh(link, message, auth)
            elif message.method == Method.CREATE_PERMISSION:
                self._on_create_permission(link, message, auth)
            else:
                self._on_channel_bind(link, message, auth)
        except StunError as exc:
            # A malformed attribute value: RFC 8489 §6.3.1 says 400.
            self._error(link, message, 400, auth, reason=str(exc)[:100])

    def _on_malformed(self, link: _Link, data: bytes, exc: StunError) -> None:
        try:
            method, cls, _, transaction_id = codec.parse_header(data)
        except StunError:
            logger.debug("TURN: dropping non-STUN packet from %s: %s", link.client, exc)
            return
        if cls == Class.REQUEST:
            self._error(link, Message(method, cls, transaction_id), 400, None, reason=str(exc)[:100])

    # --- responses -----------------------------------------------------------

    def _respond(
        self,
        link: _Link,
        request: Message,
        cls: Class,
        attributes: list[tuple[int, bytes]],
        auth: _Auth | None,
    ) -> bytes:
        response = Message(request.method, cls, request.transaction_id, attributes)
        key = auth.key if auth is not None else None
        data = response.encode(
            key if auth is not None and not auth.use_sha256 else None,
            integrity_sha256_key=key if auth is not None and auth.use_sha256 else None,
            fingerprint=request.fingerprint_offset is not None,
        )
        link.send(data)
        return data

    def _error(
        self,
        link: _Link,
        request: Message,
        code: int,
        auth: _Auth | None,
        *,
        reason: str | None = None,
        extra: list[tuple[int, bytes]] | None = None,
    ) -> None:
        self._counters["errors"] += 1
        self._counters[f"error_{code}"] += 1
        logger.debug("TURN: %d to %s for method %#x: %s", code, link.client, request.method, reason or "")
        attributes: list[tuple[int, bytes]] = [(Attr.ERROR_CODE, codec.pack_error_code(code, reason))]
        attributes.extend(extra or [])
        self._respond(link, request, Class.ERROR, attributes, auth)

    # --- authentication (RFC 8489 §9.2.4) ------------------------------------

    def _nonce_mac(self, stamp: str, link: _Link) -> str:
        return hmac.new(self._nonce_key, f"{stamp}/{link.client[0]}".encode(), hashlib.sha256).hexdigest()[:24]

    def _nonce(self, link: _Link) -> bytes:
        stamp = f"{int(time.monotonic()) + self.config.nonce_lifetime:x}"
        return f"{stamp}-{self._nonce_mac(stamp, link)}".encode()

    def _nonce_fresh(self, nonce: bytes, link: _Link) -> bool:
        try:
            text = nonce.decode("ascii")
        except UnicodeDecodeError:
            return False
        stamp, _, mac = text.partition("-")
        if not stamp or len(stamp) > 12 or any(c not in "0123456789abcdef" for c in stamp):
            return False
        if not hmac.compare_digest(mac, self._nonce_mac(stamp, link)):
            return False
        return int(stamp, 16) > time.monotonic()

    def _challenge(self, link: _Link, request: Message, code: int, reason: str | None = None) -> None:
        extra = [(int(Attr.REALM), self.config.realm.encode()), (int(Attr.NONCE), self._nonce(link))]
        self._error(link, request, code, None, reason=reason, extra=extra)

    def _authenticate(self, link: _Link, request: Message) -> _Auth | None:
        if request.integrity_offset is None and request.integrity_sha256_offset is None:
            self._challenge(link, request, 401)
            return None
        raw_username = request.get(Attr.USERNAME)
        realm = request.get(Attr.REALM)
        nonce = request.get(Attr.NONCE)
        if raw_username is None or realm is None or nonce is None:
            self._error(link, request, 400, None, reason="USERNAME, REALM and NONCE are required")
            return None
        try:
            username = raw_username.decode("utf-8")
        except UnicodeDecodeError:
            self._challenge(link, request, 401, "bad username")
            return None
        # REST credentials gate the start of a session. An allocation already made keeps
        # refreshing itself, its permissions and channels with the username it started
        # with (a call, or a room display, may outlast the username); the password must
        # still verify below.
        existing = self._table.by_five_tuple.get(link.five_tuple)
        ongoing = (existing is not None and existing.username == username
                   and request.method != Method.ALLOCATE)
        if not self.config.secret or (username_expired(username, time.time()) and not ongoing):
            logger.debug("TURN: refusing expired or invalid username %r from %s", username[:64], link.client)
            self._challenge(link, request, 401, "expired or invalid username")
            return None
        key = codec.long_term_key(username, self.config.realm, rest_password(self.config.secret, username))
        use_sha256 = request.integrity_sha256_offset is not None
        if use_sha256:
            valid = codec.verify_integrity_sha256(request, key)
        else:
            valid = codec.verify_integrity(request, key)
        if not valid:
            logger.debug("TURN: wrong credentials for %r from %s", username[:64], link.client)
            self._challenge(link, request, 401, "wrong credentials")
            return None
        if not self._nonce_fresh(nonce, link):
            self._challenge(link, request, 438)
            return None
        user = username_user(username) or username
        return _Auth(username, user, key, use_sha256)

    # --- STUN Binding (RFC 8489 §3, §6.3.1) ----------------------------------

    def _on_binding(self, link: _Link, request: Message) -> None:
        mapped = codec.pack_xor_address(link.client[0], link.client[1], request.transaction_id)
        self._respond(link, request, Class.SUCCESS, [(Attr.XOR_MAPPED_ADDRESS, mapped)], None)

    # --- Allocate (RFC 8656 §7.2) ---------------------------------------------

    def _on_allocate(self, link: _Link, request: Message, auth: _Auth) -> None:
        five_tuple = link.five_tuple
        existing = self._table.by_five_tuple.get(five_tuple)
        if existing is not None:
            if existing.transaction_id == request.transaction_id and existing.success_response:
                link.send(existing.success_response)  # a retransmission
            else:
                self._error(link, request, 437, auth)
            return
        if five_tuple in self._table.pending:
            return  # a retransmission while the relay is being set up
        transport = request.get(Attr.REQUESTED_TRANSPORT)
        if transport is None:
            self._error(link, request, 400, auth, reason="REQUESTED-TRANSPORT missing")
            return
        if codec.unpack_requested_transport(transport) != codec.TRANSPORT_UDP:
            self._error(link, request, 442, auth)
            return
        even_port = request.get(Attr.EVEN_PORT)
        token = request.get(Attr.RESERVATION_TOKEN)
        family_value = request.get(Attr.REQUESTED_ADDRESS_FAMILY)
        if token is not None and (even_port is not None or family_value is not None):
            self._error(link, request, 400, auth, reason="RESERVATION-TOKEN with EVEN-PORT or address family")
            return
        if even_port is not None and len(even_port) != 1:
            self._error(link, request, 400, auth, reason="EVEN-PORT is not 1 byte")
            return
        if token is not None and len(token) != 8:
            self._error(link, request, 400, auth, reason="RESERVATION-TOKEN is not 8 bytes")
            return
        local_family = codec.FAMILY_IPV6 if ":" in link.local[0] else codec.FAMILY_IPV4
        if family_value is not None:
            family = codec.unpack_address_family(family_value)
            if family not in (codec.FAMILY_IPV4, codec.FAMILY_IPV6):
                self._error(link, request, 440, auth)
                return
            if family != local_family:
                self._error(link, request, 440, auth, reason="relay family must match the address reached")
                return
        refusal = self._table.quota_refusal(auth.user)
        if refusal is not None:
            logger.info("TURN: 486 for %r from %s: %s", auth.user, link.client, refusal)
            self._error(link, request, 486, auth, reason=refusal)
            return
        lifetime = self._lifetime(request, allow_zero=False)
        sock: socket.socket | None
        reservation_token: bytes | None = None
        if token is not None:
            reservation = self._reservations.pop(token, None)
            if reservation is None or reservation.address[0] != link.local[0]:
                if reservation is not None:
                    reservation.sock.close()
                self._error(link, request, 508, auth, reason="unknown reservation token")
                return
            sock = reservation.sock
        else:
            want_even = even_port is not None
            reserve = want_even and bool(even_port and even_port[0] & 0x80)
            if reserve and len(self._reservations) >= self.config.max_allocations:
                self._error(link, request, 508, auth, reason="too many port reservations")
                return
            sock, reservation_token = self._bind_relay(link.local[0], want_even, reserve)
            if sock is None:
                self._error(link, request, 508, auth, reason="no relay port free")
                return
        if request.get(Attr.DONT_FRAGMENT) is not None:
            _set_dont_fragment(sock)
        self._table.reserve(five_tuple, auth.user)
        task = asyncio.get_running_loop().create_task(
            self._finish_allocate(link, request, auth, sock, lifetime, reservation_token)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_allocate(
        self,
        link: _Link,
        request: Message,
        auth: _Auth,
        sock: socket.socket,
        lifetime: int,
        reservation_token: bytes | None,
    ) -> None:
        relayed = _addr2(sock.getsockname())
        now = time.monotonic()
        allocation = Allocation(
            five_tuple=link.five_tuple,
            username=auth.username,
            user=auth.user,
            transaction_id=request.transaction_id,
            relayed=relayed,
            expires=now + lifetime,
            bucket=TokenBucket(self.config.bandwidth_per_allocation, now),
            link=link,
        )
        try:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _RelayProtocol(self, allocation), sock=sock
            )
        except OSError as exc:
            sock.close()
            self._table.release(link.five_tuple, auth.user)
            self._error(link, request, 508, auth, reason=f"relay socket: {exc}"[:100])
            return
        except asyncio.CancelledError:
            sock.close()
            self._table.release(link.five_tuple, auth.user)
            raise
        if link.transport.is_closing():
            transport.close()
            self._table.release(link.five_tuple, auth.user)
            return
        allocation.relay = transport
        self._table.add(allocation)
        self._counters["allocations_total"] += 1
        attributes: list[tuple[int, bytes]] = [
            (Attr.XOR_RELAYED_ADDRESS, codec.pack_xor_address(relayed[0], relayed[1], request.transaction_id)),
            (Attr.LIFETIME, codec.pack_u32(lifetime)),
        ]
        if reservation_token is not None:
            attributes.append((Attr.RESERVATION_TOKEN, reservation_token))
        attributes.append(
            (Attr.XOR_MAPPED_ADDRESS, codec.pack_xor_address(link.client[0], link.client[1], request.transaction_id))
        )
        allocation.success_response = self._respond(link, request, Class.SUCCESS, attributes, auth)
        logger.info(
            "TURN: allocated %s:%d for %r (%s %s:%d), %d s",
            relayed[0],
            relayed[1],
            auth.user,
            link.five_tuple[0],
            link.client[0],
            link.client[1],
            lifetime,
        )

    def _bind_relay(self, host: str, want_even: bool, reserve: bool) -> tuple[socket.socket | None, bytes | None]:
        """A UDP socket on ``host`` at a port in the relay range (RFC 8656 §7.2 for EVEN-PORT)."""
        low, high = self.config.relay_min_port, self.config.relay_max_port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(PORT_ATTEMPTS):
            port = self._random.randint(low, high)
            if want_even:
                port &= ~1
                if port < low or (reserve and port + 1 > high):
                    continue
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            _enlarge_buffers(sock, RELAY_BUFFER_BYTES)
            if not reserve:
                return sock, None
            spare = socket.socket(family, socket.SOCK_DGRAM)
            try:
                spare.bind((host, port + 1))
            except OSError:
                spare.close()
                sock.close()
                continue
            token = os.urandom(8)
            self._reservations[token] = _Reservation(spare, (host, port + 1), time.monotonic() + RESERVATION_LIFETIME)
            return sock, token
        return None, None

    def _lifetime(self, request: Message, *, allow_zero: bool) -> int:
        """RFC 8656 §7.2 / §7.3: min(requested, maximum), at least the default."""
        value = request.get(Attr.LIFETIME)
        maximum = max(1, self.config.max_lifetime)
        default = min(DEFAULT_LIFETIME, maximum)
        if value is None:
            return default
        requested = codec.unpack_u32(value, "LIFETIME")
        if requested == 0 and allow_zero:
            return 0
        return max(default, min(requested, maximum))

    def _delete(self, allocation: Allocation, why: str) -> None:
        if allocation.closed:
            return
        self._table.remove(allocation)
        allocation.closed = True
        # Keep the relayed totals of allocations that are gone.
        self._counters["packets_to_peers"] += allocation.packets_to_peer
        self._counters["packets_to_clients"] += allocation.packets_to_client
        self._counters["bytes_relayed"] += allocation.bytes_relayed
        if allocation.relay is not None:
            allocation.relay.close()
        logger.info("TURN: released %s:%d (%s)", allocation.relayed[0], allocation.relayed[1], why)

    def _on_tcp_closed(self, link: _TcpLink) -> None:
        # RFC 8656 §3.1: an allocation over TCP ends with its connection.
        allocation = self._table.by_five_tuple.get(link.five_tuple)
        if allocation is not None:
            self._delete(allocation, "TCP connection closed")

    def _owned(self, link: _Link, request: Message, auth: _Auth) -> Allocation | None:
        """The allocation of this 5-tuple, or None after answering 437 / 441."""
        allocation = self._table.by_five_tuple.get(link.five_tuple)
        if allocation is None or allocation.relay is None:
            self._error(link, request, 437, auth)
            return None
        if allocation.username != auth.username:
            # RFC 8656 §5: requests on an allocation must use its credentials.
            self._error(link, request, 441, auth)
            return None
        return allocation

    # --- Refresh (RFC 8656 §7.3) ---------------------------------------------

    def _on_refresh(self, link: _Link, request: Message, auth: _Auth) -> None:
        allocation = self._owned(link, request, auth)
        if allocation is None:
            return
        family_value = request.get(Attr.REQUESTED_ADDRESS_FAMILY)
        if family_value is not None:
            local_family = codec.FAMILY_IPV6 if ":" in allocation.relayed[0] else codec.FAMILY_IPV4
            if codec.unpack_address_family(family_value) != local_family:
                self._error(link, request, 443, auth)
                return
        lifetime = self._lifetime(request, allow_zero=True)
        if lifetime == 0:
            self._delete(allocation, "refreshed to 0")
        else:
            allocation.expires = time.monotonic() + lifetime
        self._respond(link, request, Class.SUCCESS, [(Attr.LIFETIME, codec.pack_u32(lifetime))], auth)

    # --- CreatePermission (RFC 8656 §9) --------------------------------------

    def _peer(self, request: Message, value: bytes, allocation: Allocation) -> tuple[Address | None, int, str]:
        """The decoded peer, or None with an error code and reason."""
        host, port = codec.unpack_xor_address(value, request.transaction_id)
        address = normalize_ip(host)
        if address is None:
            return None, 400, "bad peer address"
        relay_is_v6 = ":" in allocation.relayed[0]
        if (address.version == 6) != relay_is_v6:
            return None, 443, "peer address family differs from the relayed address"
        return (str(address), port), 0, ""

    def _on_create_permission(self, link: _Link, request: Message, auth: _Auth) -> None:
        allocation = self._owned(link, request, auth)
        if allocation is None:
            return
        values = request.get_all(Attr.XOR_PEER_ADDRESS)
        if not values:
            self._error(link, request, 400, auth, reason="XOR-PEER-ADDRESS missing")
            return
        peers: list[str] = []
        for value in values:
            peer, code, reason = self._peer(request, value, allocation)
            if peer is None:
                self._error(link, request, code, auth, reason=reason)
                return
            refusal = peer_ip_refusal(peer[0], allow_loopback=self.config.allow_loopback_peers)
            if refusal is not None:
                logger.info("TURN: 403 permission to %s for %r: %s", peer[0], auth.user, refusal)
                self._error(link, request, 403, auth, reason=f"Forbidden IP: {refusal}")
                return
            peers.append(peer[0])
        now = time.monotonic()
        for ip in peers:
            if not allocation.add_permission(ip, now):
                self._error(link, request, 508, auth, reason="too many permissions")
                return
        self._respond(link, request, Class.SUCCESS, [], auth)

    # --- ChannelBind (RFC 8656 §11.2) ----------------------------------------

    def _on_channel_bind(self, link: _Link, request: Message, auth: _Auth) -> None:
        allocation = self._owned(link, request, auth)
        if allocation is None:
            return
        number = request.get(Attr.CHANNEL_NUMBER)
        value = request.get(Attr.XOR_PEER_ADDRESS)
        if number is None or value is None:
            self._error(link, request, 400, auth, reason="CHANNEL-NUMBER and XOR-PEER-ADDRESS are required")
            return
        channel = codec.unpack_channel_number(number)
        if not codec.CHANNEL_MIN <= channel <= codec.CHANNEL_MAX:
            self._error(link, request, 400, auth, reason="channel number out of range")
            return
        peer, code, reason = self._peer(request, value, allocation)
        if peer is None:
            self._error(link, request, code, auth, reason=reason)
            return
        refusal = self._peer_refusal(peer)
        if refusal is not None:
            logger.info("TURN: 403 channel to %s:%d for %r: %s", peer[0], peer[1], auth.user, refusal)
            self._error(link, request, 403, auth, reason=f"Forbidden IP: {refusal}")
            return
        now = time.monotonic()
        problem = allocation.bind_channel(channel, peer, now)
        if problem is not None:
            self._error(link, request, 400, auth, reason=problem)
            return
        if not allocation.add_permission(peer[0], now):
            self._error(link, request, 508, auth, reason="too many permissions")
            return
        self._respond(link, request, Class.SUCCESS, [], auth)

    def _peer_refusal(self, peer: Address) -> str | None:
        return peer_refusal(
            peer[0],
            peer[1],
            allow_loopback=self.config.allow_loopback_peers,
            own_addresses=self._own_addresses,
            forbidden_ports=self._forbidden_ports,
        )

    # --- Send and Data indications (RFC 8656 §10) ----------------------------

    def _on_send(self, link: _Link, message: Message) -> None:
        allocation = self._table.by_five_tuple.get(link.five_tuple)
        value = message.get(Attr.XOR_PEER_ADDRESS)
        payload = message.get(Attr.DATA)
        if allocation is None or allocation.relay is None or value is None or payload is None:
            self._counters["packets_dropped"] += 1
            return
        try:
            peer, _, _ = self._peer(message, value, allocation)
        except StunError:
            peer = None
        now = time.monotonic()
        if peer is None or not allocation.has_permission(peer[0], now) or self._peer_refusal(peer) is not None:
            self._counters["packets_dropped"] += 1
            return
        if not allocation.bucket.take(len(payload), now):
            self._counters["packets_dropped"] += 1
            return
        allocation.relay.sendto(payload, peer)
        allocation.packets_to_peer += 1
        allocation.bytes_relayed += len(payload)

    # --- packets from peers (RFC 8656 §10.3, §12.6) ---------------------------

    def _on_peer_packet(self, allocation: Allocation, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
        try:
            if allocation.closed:
                return
            if len(data) > MAX_RELAY_PAYLOAD:
                self._counters["packets_dropped"] += 1
                return
            peer = (str(addr[0]), int(addr[1]))
            now = time.monotonic()
            if not allocation.has_permission(peer[0], now):
                self._counters["packets_dropped"] += 1
                return
            if not allocation.bucket.take(len(data), now):
                self._counters["packets_dropped"] += 1
                return
            link = allocation.link
            channel = allocation.peer_channel(peer, now)
            if channel is not None:
                link.send(codec.pack_channel_data(channel, data, pad=link.stream))
            else:
                indication = Message(Method.DATA, Class.INDICATION, os.urandom(12))
                indication.add(Attr.XOR_PEER_ADDRESS, codec.pack_xor_address(peer[0], peer[1], indication.transaction_id))
                indication.add(Attr.DATA, data)
                link.send(indication.encode())
            allocation.packets_to_client += 1
            allocation.bytes_relayed += len(data)
        except Exception:  # noqa: BLE001 - the last line of defence; logged loudly
            logger.exception("TURN: internal error relaying from %s to %s", addr, allocation.relayed)


def _enlarge_buffers(sock: socket.socket, size: int) -> None:
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        except OSError as exc:
            logger.debug("TURN: cannot set socket buffer: %s", exc)


def _set_dont_fragment(sock: socket.socket) -> None:
    """RFC 8656 §7.2 DONT-FRAGMENT: set DF on the relay socket where the OS allows."""
    option = getattr(socket, "IP_MTU_DISCOVER", None)
    value = getattr(socket, "IP_PMTUDISC_DO", None)
    if option is None or value is None or sock.family != socket.AF_INET:
        return
    try:
        sock.setsockopt(socket.IPPROTO_IP, option, value)
    except OSError as exc:
        logger.debug("TURN: cannot set DF: %s", exc)


def _local_addresses() -> set[str]:
    """Every address of this machine's interfaces (for the own-service-port rule)."""
    try:
        import ifaddr
    except ImportError:
        return set()
    found: set[str] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            host = ip.ip[0] if isinstance(ip.ip, tuple) else ip.ip
            address = normalize_ip(str(host))
            if address is not None:
                found.add(str(address))
    return found
