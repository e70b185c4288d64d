"""The TURN server: listeners, the request dispatcher, and its lifecycle.

Transports (:mod:`~meshcall.turn.transports`) decode and hand over to
:class:`TurnServer`, which answers Binding itself, has requests
authenticated (:mod:`~meshcall.turn.auth`) and passes TURN methods to the
:class:`~meshcall.turn.allocator.Allocator`. Nothing raised while handling a
packet leaves the handler: bad input gets an RFC error response or is dropped.

Every reading of time goes through the injected ``clock`` (monotonic
seconds) or ``wall_clock`` (Unix time, for REST username expiry), so tests
move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Callable

from . import codec
from .allocations import Address, AllocationTable, FiveTuple
from .allocator import Allocator, AllocatorLimits
from .auth import Auth, Authenticator, Nonces, Refusal, encode_response
from .codec import Attr, Class, Message, Method, StunError
from .config import TurnConfig
from .limits import (
    LISTENER_BUFFER_BYTES,
    MAX_TCP_CONNECTIONS,
    SWEEP_INTERVAL,
    TCP_IDLE_WITHOUT_ALLOCATION,
    TCP_IDLE_WITHOUT_AUTHENTICATION,
)
from .policy import normalize_ip
from .transports import (
    Link,
    TcpLink,
    TcpProtocol,
    UdpListener,
    local_addresses,
    tcp_listener_socket,
    udp_listener_socket,
)

__all__ = ["TurnConfig", "TurnServer"]

logger = logging.getLogger(__name__)

# Attributes this server understands in requests; any other comprehension-required
# attribute gets 420 (RFC 8489 §6.3.1.1).
KNOWN_ATTRIBUTES = frozenset(int(a) for a in Attr if a < codec.COMPREHENSION_OPTIONAL_MIN)
_TURN_METHODS = (Method.ALLOCATE, Method.REFRESH, Method.CREATE_PERMISSION, Method.CHANNEL_BIND)


class TurnServer:
    """A STUN/TURN server bound to concrete addresses, UDP and TCP on each."""

    def __init__(
        self,
        config: TurnConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if config.relay_min_port > config.relay_max_port:
            raise ValueError("relay_min_port is above relay_max_port")
        self.config = config
        self.clock = clock
        self._counters: Counter[str] = Counter()
        self._table = AllocationTable(
            config.max_allocations, config.max_allocations_per_user, config.max_allocations_per_ip
        )
        limits = AllocatorLimits(
            relay_min_port=config.relay_min_port,
            relay_max_port=config.relay_max_port,
            max_lifetime=config.max_lifetime,
            bandwidth_per_allocation=config.bandwidth_per_allocation,
            allow_loopback_peers=config.allow_loopback_peers,
        )
        self._allocator = Allocator(self._table, limits, self, clock, self._counters)
        self._auth = Authenticator(config.secret, config.realm, Nonces(config.nonce_lifetime, clock), wall_clock)
        self._port = 0
        self._udp: list[UdpListener] = []
        self._tcp: list[asyncio.Server] = []
        # Open TCP connections, oldest first, and how many per client address.
        self._tcp_links: dict[TcpLink, None] = {}
        self._tcp_per_ip: Counter[str] = Counter()
        self._sweeper: asyncio.Task[None] | None = None

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
        own |= local_addresses()
        self._allocator.own_addresses = frozenset(own)
        self._allocator.forbidden_ports = frozenset(self.config.forbidden_ports) | {self._port}
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
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
            udp = udp_listener_socket(host, port, LISTENER_BUFFER_BYTES)
            if port == 0:
                port = udp.getsockname()[1]
            local = (host, port)
            listener = UdpListener(self, local, udp)
            self._udp.append(listener)
            listener.start(loop)
            tcp = tcp_listener_socket(host, port)
            server = await loop.create_server(lambda local=local: TcpProtocol(self, local), sock=tcp)  # type: ignore[misc]
            self._tcp.append(server)
        self._port = port

    async def _close_listeners(self) -> None:
        for listener in self._udp:
            listener.close()
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
        await self._allocator.close()
        for link in list(self._tcp_links):
            link.close()
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

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.sweep()

    def sweep(self) -> None:
        """Expire whatever is due at the clock's now; runs every SWEEP_INTERVAL.

        Tests that move a fake clock call it to see the effect at once.
        """
        now = self.clock()
        self._allocator.sweep(now)
        for link in list(self._tcp_links):
            age = now - link.opened
            if not link.authenticated and age > TCP_IDLE_WITHOUT_AUTHENTICATION:
                logger.debug("TURN: closing TCP connection from %s: not authenticated", link.client)
                self._drop_tcp(link)
            elif age > TCP_IDLE_WITHOUT_ALLOCATION and not self._tcp_holds_allocation(link):
                logger.debug("TURN: closing TCP connection from %s: no allocation", link.client)
                self._drop_tcp(link)

    def forget_user(self, peer_id: str) -> int:
        """Release at once every relay allocation and port reservation of one person.

        ``peer_id`` is the user part of the TURN REST usernames the appliance
        handed out (``<expiry>:<peer id>``), whatever their expiry: call it
        when that peer leaves for good, so its quota and relay ports are free
        now rather than when its allocations expire (up to
        ``max_lifetime`` later). Allocations being set up are cancelled; a
        TCP connection that carried a released allocation is closed. Its
        credentials stay valid until they expire. Returns how many
        allocations and reservations were released. Call it from the event
        loop the server runs in.
        """
        released = self._allocator.forget_user(peer_id)
        if released:
            logger.info("TURN: released %d allocations and reservations of %r", released, peer_id)
        return released

    # --- from the transports ---------------------------------------------------

    def _tcp_holds_allocation(self, link: TcpLink) -> bool:
        return link.five_tuple in self._table.by_five_tuple or link.five_tuple in self._table.pending

    def _uncount_tcp(self, link: TcpLink) -> None:
        if link in self._tcp_links:
            del self._tcp_links[link]
            self._tcp_per_ip[link.client[0]] -= 1
            if self._tcp_per_ip[link.client[0]] <= 0:
                del self._tcp_per_ip[link.client[0]]

    def _drop_tcp(self, link: TcpLink) -> None:
        """Close a connection and stop counting it at once (connection_lost comes later)."""
        self._uncount_tcp(link)
        link.close()

    def on_tcp_opened(self, transport: asyncio.Transport, client: Address, local: Address) -> TcpLink | None:
        # One address may hold as many connections as allocations: each carries at most one.
        if self._tcp_per_ip[client[0]] >= self.config.max_allocations_per_ip:
            logger.debug("TURN: refusing a TCP connection from %s: %d open from there", client[0], self._tcp_per_ip[client[0]])
            transport.close()
            return None
        if len(self._tcp_links) >= MAX_TCP_CONNECTIONS:
            # Full: make room by closing the oldest connection that has not authenticated,
            # so idle connections from many addresses cannot lock out a real client.
            idle = next((old for old in self._tcp_links if not old.authenticated), None)
            if idle is None:
                logger.warning("TURN: refusing a TCP connection: %d open already", MAX_TCP_CONNECTIONS)
                transport.close()
                return None
            logger.debug("TURN: closing the oldest unauthenticated TCP connection (from %s) for a new one", idle.client)
            self._drop_tcp(idle)
        link = TcpLink(transport, client, local, self.clock())
        self._tcp_links[link] = None
        self._tcp_per_ip[client[0]] += 1
        return link

    def on_tcp_closed(self, link: TcpLink) -> None:
        self._uncount_tcp(link)
        self._allocator.on_tcp_closed(link)

    def on_udp_channel_data(self, five_tuple: FiveTuple, data: memoryview) -> None:
        # The hot path: ChannelData needs only the allocation, not a link.
        self._allocator.on_channel_data(self._table.by_five_tuple.get(five_tuple), data)

    def on_client_packet(self, link: Link, data: bytes) -> None:
        try:
            if data and 0x40 <= data[0] <= 0x7F:
                self._allocator.on_channel_data(self._table.by_five_tuple.get(link.five_tuple), data)
            else:
                self._on_stun(link, data)
        except Exception:  # noqa: BLE001 - the last line of defence; logged loudly
            logger.exception("TURN: internal error on a packet from %s", link.client)

    # --- STUN messages from clients ----------------------------------------

    def _on_stun(self, link: Link, data: bytes) -> None:
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
                self._allocator.on_send(link, message)
            return
        if message.cls != Class.REQUEST:
            return
        self._counters["requests"] += 1
        unknown = sorted({k for k, _ in message.attributes if k < 0x8000 and k not in KNOWN_ATTRIBUTES})
        if unknown:
            self.error(link, message, 420, None, extra=[(Attr.UNKNOWN_ATTRIBUTES, codec.pack_unknown_attributes(unknown))])
            return
        if message.method == Method.BINDING:
            self._on_binding(link, message)
            return
        if message.method not in _TURN_METHODS:
            self.error(link, message, 400, None, reason="unknown method")
            return
        auth = self._authenticate(link, message)
        if auth is None:
            return
        allocator = self._allocator
        try:
            if message.method == Method.ALLOCATE:
                allocator.on_allocate(link, message, auth)
            elif message.method == Method.REFRESH:
                allocator.on_refresh(link, message, auth)
            elif message.method == Method.CREATE_PERMISSION:
                allocator.on_create_permission(link, message, auth)
            else:
                allocator.on_channel_bind(link, message, auth)
        except StunError as exc:
            # A malformed attribute value: RFC 8489 §6.3.1 says 400.
            self.error(link, message, 400, auth, reason=str(exc)[:100])

    def _on_malformed(self, link: Link, data: bytes, exc: StunError) -> None:
        try:
            method, cls, _, transaction_id = codec.parse_header(data)
        except StunError:
            logger.debug("TURN: dropping non-STUN packet from %s: %s", link.client, exc)
            return
        if cls == Class.REQUEST:
            self.error(link, Message(method, cls, transaction_id), 400, None, reason=str(exc)[:100])

    def _authenticate(self, link: Link, request: Message) -> Auth | None:
        """The request's credentials, or None after answering 400, 401 or 438."""
        existing = self._table.by_five_tuple.get(link.five_tuple)
        result = self._auth.check(request, link.client[0], existing.username if existing is not None else None)
        if isinstance(result, Refusal):
            extra = self._auth.challenge_attributes(link.client[0]) if result.challenge else None
            self.error(link, request, result.code, None, reason=result.reason, extra=extra)
            return None
        if isinstance(link, TcpLink):
            link.authenticated = True
        return result

    def _on_binding(self, link: Link, request: Message) -> None:
        # RFC 8489 §3: the reflexive transport address, unauthenticated.
        mapped = codec.pack_xor_address(link.client[0], link.client[1], request.transaction_id)
        self.respond(link, request, Class.SUCCESS, [(Attr.XOR_MAPPED_ADDRESS, mapped)], None)

    # --- answers (the allocator's Replier) ---------------------------------

    def respond(
        self, link: Link, request: Message, cls: Class, attributes: list[tuple[int, bytes]], auth: Auth | None
    ) -> bytes:
        """Sign, send and return an answer to ``request``."""
        data = encode_response(request, cls, attributes, auth)
        link.send(data)
        return data

    def error(
        self,
        link: Link,
        request: Message,
        code: int,
        auth: Auth | None,
        *,
        reason: str | None = None,
        extra: list[tuple[int, bytes]] | None = None,
    ) -> None:
        """Answer ``request`` with an error response (RFC 8489 §14.8), counted per code."""
        self._counters["errors"] += 1
        self._counters[f"error_{code}"] += 1
        logger.debug("TURN: %d to %s for method %#x: %s", code, link.client, request.method, reason or "")
        attributes: list[tuple[int, bytes]] = [(Attr.ERROR_CODE, codec.pack_error_code(code, reason))]
        attributes.extend(extra or [])
        self.respond(link, request, Class.ERROR, attributes, auth)
