"""How packets reach the TURN server and leave it: sockets, protocols and framing.

UDP listeners, TCP connections with RFC 6544 stream framing (RFC 8656 §3.1),
and relay sockets. These only move bytes: every packet is handed to a
:class:`PacketHandler`, which decides what it means.

UDP carries the media, so its sockets skip asyncio's datagram transports
(one trip through the event loop and one protocol callback per datagram):
they are non-blocking sockets watched with ``loop.add_reader`` and drained
per wake-up into a preallocated buffer, and sends go straight to
``sendto``, where a full socket buffer drops the datagram as a router would
rather than queueing it. TCP keeps asyncio's stream transport.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Callable, Protocol, cast

from . import codec
from .allocations import Address, FiveTuple
from .codec import StunError
from .limits import TCP_WRITE_LIMIT
from .policy import normalize_ip

if TYPE_CHECKING:
    from .allocations import Allocation

logger = logging.getLogger(__name__)


class UdpLink:
    """A client reached over one UDP listener."""

    __slots__ = ("transport", "sock", "client", "local", "stream")

    def __init__(self, transport: UdpListener, sock: socket.socket, client: Address, local: Address) -> None:
        self.transport = transport
        self.sock = sock  # the listener's socket, for sending without asyncio's buffering
        self.client = client
        self.local = local
        self.stream = False

    @property
    def five_tuple(self) -> FiveTuple:
        return ("udp", self.client, self.local)

    def send(self, data: bytes | memoryview) -> None:
        try:
            # A full socket buffer drops the datagram (UDP), rather than queueing it in
            # asyncio without bound; a closed listener (stopping) raises EBADF.
            self.sock.sendto(data, self.client)
        except OSError as exc:
            logger.debug("TURN: UDP to %s: %s", self.client, exc)


class TcpLink:
    """A client on one TCP connection (RFC 8656 §3.1, RFC 6544 framing)."""

    __slots__ = ("transport", "client", "local", "stream", "opened", "authenticated")

    def __init__(self, transport: asyncio.Transport, client: Address, local: Address, opened: float) -> None:
        self.transport = transport
        self.client = client
        self.local = local
        self.stream = True
        self.opened = opened
        self.authenticated = False  # set once a request on it passed authentication

    @property
    def five_tuple(self) -> FiveTuple:
        return ("tcp", self.client, self.local)

    def send(self, data: bytes | memoryview) -> None:
        if self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size() > TCP_WRITE_LIMIT:
            return
        self.transport.write(data)

    def close(self) -> None:
        self.transport.close()


Link = UdpLink | TcpLink


class PacketHandler(Protocol):
    """What the transports hand their packets and connections to."""

    def on_client_packet(self, link: Link, data: bytes) -> None:
        """A STUN message or ChannelData frame from a client."""

    def on_udp_channel_data(self, five_tuple: FiveTuple, data: memoryview) -> None:
        """ChannelData from a UDP client: the hot path, no link object built, no copy made.

        ``data`` is a view of the listener's buffer, valid only during the call.
        """

    def on_tcp_opened(self, transport: asyncio.Transport, client: Address, local: Address) -> TcpLink | None:
        """A new TCP connection: its link, or None after closing it (over a limit)."""

    def on_tcp_closed(self, link: TcpLink) -> None:
        """A TCP connection is gone."""


def host_port(addr: tuple) -> Address:  # type: ignore[type-arg]
    """(host, port) from a socket address of either family (IPv6 ones have four fields)."""
    return (str(addr[0]), int(addr[1]))


# The largest UDP payload (RFC 768 length field), so no datagram is ever cut short.
MAX_DATAGRAM = 0xFFFF
# Datagrams read from one socket per readiness event: a socket carrying a burst is
# drained without going back to the event loop for each datagram, yet one busy
# socket cannot keep the others (and the timers) waiting for long.
DRAIN_LIMIT = 64
# Errors that mean "nothing more to read now".
_WOULD_BLOCK = (BlockingIOError, InterruptedError)


class UdpListener:
    """One UDP listen address: STUN requests, indications and ChannelData.

    Reads its non-blocking socket directly from the event loop's selector
    (``loop.add_reader``), up to :data:`DRAIN_LIMIT` datagrams per wake-up,
    into one preallocated buffer. ChannelData is relayed straight from that
    buffer (its handler must not keep it); anything else is copied out first.
    """

    def __init__(self, handler: PacketHandler, local: Address, sock: socket.socket) -> None:
        self.handler = handler
        self.local = local
        self.sock = sock
        self._buffer = bytearray(MAX_DATAGRAM)
        self._view = memoryview(self._buffer)
        self._loop: asyncio.AbstractEventLoop | None = None
        sock.setblocking(False)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._read_ready)

    def is_closing(self) -> bool:
        return self._loop is None

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.sock.close()

    def _read_ready(self) -> None:
        recv = self.sock.recvfrom_into
        buffer = self._buffer
        view = self._view
        handler = self.handler
        local = self.local
        for _ in range(DRAIN_LIMIT):
            try:
                size, addr = recv(buffer)
            except _WOULD_BLOCK:
                return
            except OSError as exc:  # closed while draining, or an ICMP error
                logger.debug("TURN: UDP listener %s: %s", local, exc)
                return
            client = addr if len(addr) == 2 else host_port(addr)
            if size and 0x40 <= buffer[0] <= 0x7F:
                # RFC 8656 §12.4: the first two bits 0b01 mark ChannelData.
                handler.on_udp_channel_data(("udp", client, local), view[:size])
            else:
                handler.on_client_packet(UdpLink(self, self.sock, client, local), bytes(view[:size]))
            if self._loop is None:
                return  # closed by what the packet did


class TcpProtocol(asyncio.Protocol):
    """One TCP connection: cuts the byte stream into STUN messages and ChannelData."""

    def __init__(self, handler: PacketHandler, local: Address) -> None:
        self.handler = handler
        self.local = local
        self.buffer = bytearray()
        self.link: TcpLink | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = host_port(transport.get_extra_info("peername"))
        self.link = self.handler.on_tcp_opened(cast(asyncio.Transport, transport), peer, self.local)

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
            self.handler.on_client_packet(link, frame)
            if link.transport.is_closing():
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link is not None:
            self.handler.on_tcp_closed(self.link)


PeerPacketHandler = Callable[["Allocation", memoryview, int, Address], None]


# The bytes kept free in front of a peer's datagram in a relay's buffer: the
# ChannelData header (RFC 8656 §12.4) is written there, so the datagram goes on
# to the client without being copied.
CHANNEL_HEADER_ROOM = 4


def relay_buffer() -> memoryview:
    """A receive buffer for :class:`RelaySocket`: room for a header and the largest datagram."""
    return memoryview(bytearray(CHANNEL_HEADER_ROOM + MAX_DATAGRAM))


class RelaySocket:
    """The relay socket of one allocation: sends to peers, reads their datagrams.

    Like :class:`UdpListener` it drains its non-blocking socket per wake-up.
    Each datagram is read into ``buffer`` (see :func:`relay_buffer`) at offset
    :data:`CHANNEL_HEADER_ROOM` and handed over as ``(allocation, buffer,
    size, peer)``; the handler may fill the 4 bytes in front and send the
    frame from the buffer, and must not keep it. Relay sockets of one event
    loop share one buffer: each datagram is dealt with before the next is read.
    """

    def __init__(self, sock: socket.socket, on_packet: PeerPacketHandler, allocation: Allocation, buffer: memoryview) -> None:
        self.sock = sock
        self.sendto = sock.sendto
        self.on_packet = on_packet
        self.allocation = allocation
        self._view = buffer
        self._loop: asyncio.AbstractEventLoop | None = None
        sock.setblocking(False)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._read_ready)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.sock.close()

    def _read_ready(self) -> None:
        recv = self.sock.recvfrom_into
        view = self._view
        payload = view[CHANNEL_HEADER_ROOM:]
        on_packet = self.on_packet
        allocation = self.allocation
        for _ in range(DRAIN_LIMIT):
            try:
                size, addr = recv(payload)
            except _WOULD_BLOCK:
                return
            except OSError as exc:
                # ICMP errors from peers (RFC 8656 §11.1 ICMP attribute not implemented).
                logger.debug("TURN: relay %s: %s", allocation.relayed, exc)
                return
            on_packet(allocation, view, size, addr if len(addr) == 2 else host_port(addr))
            if self._loop is None:
                return  # the allocation went while draining


def udp_listener_socket(host: str, port: int, buffer_bytes: int) -> socket.socket:
    """A bound UDP socket; OSError names the address if it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        enlarge_buffers(sock, buffer_bytes)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"TURN: cannot bind UDP {host} port {port}: {exc.strerror}") from exc
    return sock


def tcp_listener_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; OSError names the address if it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"TURN: cannot bind TCP {host} port {port}: {exc.strerror}") from exc
    return sock


def enlarge_buffers(sock: socket.socket, size: int) -> None:
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        except OSError as exc:
            logger.debug("TURN: cannot set socket buffer: %s", exc)


def set_dont_fragment(sock: socket.socket) -> None:
    """RFC 8656 §7.2 DONT-FRAGMENT: set DF on the relay socket where the OS allows."""
    option = getattr(socket, "IP_MTU_DISCOVER", None)
    value = getattr(socket, "IP_PMTUDISC_DO", None)
    if option is None or value is None or sock.family != socket.AF_INET:
        return
    try:
        sock.setsockopt(socket.IPPROTO_IP, option, value)
    except OSError as exc:
        logger.debug("TURN: cannot set DF: %s", exc)


def local_addresses() -> set[str]:
    """Every address of this machine's interfaces (the relay policy's "own addresses")."""
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
