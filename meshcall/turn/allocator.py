"""The TURN methods over the allocation table (RFC 8656 §7-§12).

Allocate, Refresh, CreatePermission, ChannelBind, and the relaying itself:
Send indications and ChannelData from clients, datagrams from peers framed
back as Data indications or ChannelData. Requests arrive already
authenticated; answers go out through a :class:`Replier`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Protocol, cast

from ..buckets import Bucket
from . import codec
from .allocations import Address, Allocation, AllocationTable, FiveTuple, Reservation
from .auth import Auth
from .codec import Attr, Class, Message, Method, StunError
from .limits import (
    DEFAULT_LIFETIME,
    MAX_PERMISSIONS_PER_ALLOCATION,
    MAX_RELAY_PAYLOAD,
    PORT_ATTEMPTS,
    RELAY_BUFFER_BYTES,
    RESERVATION_LIFETIME,
)
from .policy import normalize_ip, peer_ip_refusal, peer_refusal
from .transports import (
    CHANNEL_HEADER_ROOM,
    Link,
    RelaySocket,
    TcpLink,
    enlarge_buffers,
    host_port,
    relay_buffer,
    set_dont_fragment,
)

logger = logging.getLogger(__name__)

_CHANNEL_HEADER = struct.Struct("!HH")


class Replier(Protocol):
    """How the allocator answers a request (the server signs, counts and sends)."""

    def respond(
        self, link: Link, request: Message, cls: Class, attributes: list[tuple[int, bytes]], auth: Auth | None
    ) -> bytes: ...

    def error(
        self,
        link: Link,
        request: Message,
        code: int,
        auth: Auth | None,
        *,
        reason: str | None = None,
        extra: list[tuple[int, bytes]] | None = None,
    ) -> None: ...


@dataclass
class AllocatorLimits:
    """The numbers the allocator enforces (from :class:`~meshcall.turn.server.TurnConfig`)."""

    relay_min_port: int
    relay_max_port: int
    max_lifetime: int
    bandwidth_per_allocation: int
    allow_loopback_peers: bool


class Allocator:
    """Allocations, their relay sockets, permissions and channels, and the relaying."""

    def __init__(
        self,
        table: AllocationTable,
        limits: AllocatorLimits,
        replier: Replier,
        clock: Callable[[], float],
        counters: Counter[str],
    ) -> None:
        self.table = table
        self.limits = limits
        self.replier = replier
        self.clock = clock
        self.counters = counters
        self.own_addresses: frozenset[str] = frozenset()
        self.forbidden_ports: frozenset[int] = frozenset()
        # Allocations being set up (their relay socket is being registered).
        self._tasks: dict[FiveTuple, asyncio.Task[None]] = {}
        self._random = random.Random()
        # One receive buffer for every relay socket (64 KiB each would add up to
        # tens of MiB at the allocation limit); see RelaySocket.
        self._relay_buffer = relay_buffer()

    # --- lifecycle -----------------------------------------------------------

    async def close(self) -> None:
        """Cancel allocations being set up; release every allocation and reservation."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for allocation in list(self.table.by_five_tuple.values()):
            self.delete(allocation, "server stopping")
        self._drop_reservations(lambda r: True)

    def sweep(self, now: float) -> None:
        """Drop what has expired by ``now``: allocations, permissions, channels, reservations."""
        for allocation in self.table.expired(now):
            self.delete(allocation, "lifetime expired")
        for allocation in self.table.by_five_tuple.values():
            allocation.expire_children(now)
        self._drop_reservations(lambda r: r.expires <= now)

    def _drop_reservations(self, which: Callable[[Reservation], bool]) -> int:
        dropped = self.table.reservations_where(which)
        for reservation in dropped:
            self.table.take_reservation(reservation.token)
            reservation.handle.close()
        return len(dropped)

    def forget_user(self, user: str) -> int:
        """Release at once everything ``user`` holds; how many allocations and reservations that was."""
        count = 0
        for five_tuple, task in list(self._tasks.items()):
            if self.table.pending.get(five_tuple) == user:
                task.cancel()  # its clean-up releases the quota and drops its reservation
                count += 1
        for allocation in [a for a in self.table.by_five_tuple.values() if a.user == user]:
            self.delete(allocation, "its user left")
            if isinstance(allocation.link, TcpLink):
                allocation.link.close()  # RFC 8656 §3.1: the connection was only for this allocation
            count += 1
        return count + self._drop_reservations(lambda r: r.user == user)

    def delete(self, allocation: Allocation, why: str) -> None:
        if allocation.closed:
            return
        self.table.remove(allocation)
        allocation.closed = True
        # Its EVEN-PORT reservations go with it (RFC 8656 §7.2 leaves their fate to the server).
        self._drop_reservations(lambda r: r.owner == allocation.five_tuple)
        # Keep the relayed totals of allocations that are gone.
        self.counters["packets_to_peers"] += allocation.packets_to_peer
        self.counters["packets_to_clients"] += allocation.packets_to_client
        self.counters["bytes_relayed"] += allocation.bytes_relayed
        if allocation.relay is not None:
            allocation.relay.close()
        logger.info("TURN: released %s:%d (%s)", allocation.relayed[0], allocation.relayed[1], why)

    def on_tcp_closed(self, link: TcpLink) -> None:
        # RFC 8656 §3.1: an allocation over TCP ends with its connection.
        allocation = self.table.by_five_tuple.get(link.five_tuple)
        if allocation is not None:
            self.delete(allocation, "TCP connection closed")

    # --- Allocate (RFC 8656 §7.2) ---------------------------------------------

    def on_allocate(self, link: Link, request: Message, auth: Auth) -> None:
        reply = self.replier
        five_tuple = link.five_tuple
        existing = self.table.by_five_tuple.get(five_tuple)
        if existing is not None:
            if existing.transaction_id == request.transaction_id and existing.success_response:
                link.send(existing.success_response)  # a retransmission
            else:
                reply.error(link, request, 437, auth)
            return
        if five_tuple in self.table.pending:
            return  # a retransmission while the relay is being set up
        transport = request.get(Attr.REQUESTED_TRANSPORT)
        if transport is None:
            reply.error(link, request, 400, auth, reason="REQUESTED-TRANSPORT missing")
            return
        if codec.unpack_requested_transport(transport) != codec.TRANSPORT_UDP:
            reply.error(link, request, 442, auth)
            return
        even_port = request.get(Attr.EVEN_PORT)
        token = request.get(Attr.RESERVATION_TOKEN)
        family_value = request.get(Attr.REQUESTED_ADDRESS_FAMILY)
        if token is not None and (even_port is not None or family_value is not None):
            reply.error(link, request, 400, auth, reason="RESERVATION-TOKEN with EVEN-PORT or address family")
            return
        if even_port is not None and len(even_port) != 1:
            reply.error(link, request, 400, auth, reason="EVEN-PORT is not 1 byte")
            return
        if token is not None and len(token) != 8:
            reply.error(link, request, 400, auth, reason="RESERVATION-TOKEN is not 8 bytes")
            return
        local_family = codec.FAMILY_IPV6 if ":" in link.local[0] else codec.FAMILY_IPV4
        if family_value is not None:
            family = codec.unpack_address_family(family_value)
            if family not in (codec.FAMILY_IPV4, codec.FAMILY_IPV6):
                reply.error(link, request, 440, auth)
                return
            if family != local_family:
                reply.error(link, request, 440, auth, reason="relay family must match the address reached")
                return
        lifetime = self._lifetime(request, allow_zero=False)
        want_even = even_port is not None
        reserve = want_even and bool(even_port and even_port[0] & 0x80)
        reservation = self.table.take_reservation(token) if token is not None else None
        # A reservation becomes the allocation (its quota is taken over); R asks for two.
        refusal = self.table.quota_refusal(auth.user, link.client[0], 2 if reserve else 1)
        if refusal is not None:
            if reservation is not None:
                self.table.add_reservation(reservation)  # still there for a request within quota
            logger.info("TURN: 486 for %r from %s: %s", auth.user, link.client, refusal)
            reply.error(link, request, 486, auth, reason=refusal)
            return
        sock: socket.socket | None
        reservation_token: bytes | None = None
        if token is not None:
            if reservation is None or reservation.address[0] != link.local[0]:
                if reservation is not None:
                    reservation.handle.close()
                reply.error(link, request, 508, auth, reason="unknown reservation token")
                return
            sock = cast(socket.socket, reservation.handle)
        else:
            sock, reservation_token = self._bind_relay(link, auth.user, want_even, reserve)
            if sock is None:
                reply.error(link, request, 508, auth, reason="no relay port free")
                return
        if request.get(Attr.DONT_FRAGMENT) is not None:
            set_dont_fragment(sock)
        self.table.reserve(five_tuple, auth.user)
        task = asyncio.get_running_loop().create_task(
            self._finish_allocate(link, request, auth, sock, lifetime, reservation_token)
        )
        self._tasks[five_tuple] = task
        task.add_done_callback(lambda done: self._allocate_done(done, five_tuple, sock))

    def _allocate_done(self, task: asyncio.Task[None], five_tuple: FiveTuple, sock: socket.socket) -> None:
        self._tasks.pop(five_tuple, None)
        if task.cancelled():
            # Cancelled before it ran (forget_user, close): nothing of it was set up
            # but the quota it holds, its reservation and the socket.
            sock.close()
            self._abandon(five_tuple)

    async def _finish_allocate(
        self,
        link: Link,
        request: Message,
        auth: Auth,
        sock: socket.socket,
        lifetime: int,
        reservation_token: bytes | None,
    ) -> None:
        relayed = host_port(sock.getsockname())
        now = self.clock()
        allocation = Allocation(
            five_tuple=link.five_tuple,
            username=auth.username,
            user=auth.user,
            transaction_id=request.transaction_id,
            relayed=relayed,
            expires=now + lifetime,
            bucket=(Bucket.bytes_per_second(self.limits.bandwidth_per_allocation, now)
                    if self.limits.bandwidth_per_allocation > 0 else None),  # 0: no limit
            link=link,
        )
        if link.transport.is_closing() or link.five_tuple not in self.table.pending:
            sock.close()
            self._abandon(link.five_tuple)
            return
        relay = RelaySocket(sock, self.on_peer_packet, allocation, self._relay_buffer)
        try:
            relay.start(asyncio.get_running_loop())
        except (OSError, ValueError) as exc:
            relay.close()
            self._abandon(link.five_tuple)
            self.replier.error(link, request, 508, auth, reason=f"relay socket: {exc}"[:100])
            return
        allocation.relay = relay
        allocation.relay_sendto = relay.sendto
        self.table.add(allocation)
        self.counters["allocations_total"] += 1
        attributes: list[tuple[int, bytes]] = [
            (Attr.XOR_RELAYED_ADDRESS, codec.pack_xor_address(relayed[0], relayed[1], request.transaction_id)),
            (Attr.LIFETIME, codec.pack_u32(lifetime)),
        ]
        if reservation_token is not None:
            attributes.append((Attr.RESERVATION_TOKEN, reservation_token))
        attributes.append(
            (Attr.XOR_MAPPED_ADDRESS, codec.pack_xor_address(link.client[0], link.client[1], request.transaction_id))
        )
        allocation.success_response = self.replier.respond(link, request, Class.SUCCESS, attributes, auth)
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

    def _abandon(self, five_tuple: FiveTuple) -> None:
        """An allocation that will not be: stop counting it, drop the port it reserved."""
        self.table.release(five_tuple)
        self._drop_reservations(lambda r: r.owner == five_tuple)

    def _bind_relay(self, link: Link, user: str, want_even: bool, reserve: bool) -> tuple[socket.socket | None, bytes | None]:
        """A UDP socket on the address ``link`` reached, at a port in the relay range.

        RFC 8656 §7.2 for EVEN-PORT: with R the next port is held for
        ``user`` as a reservation, and its token returned.
        """
        host = link.local[0]
        low, high = self.limits.relay_min_port, self.limits.relay_max_port
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
            enlarge_buffers(sock, RELAY_BUFFER_BYTES)
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
            expires = self.clock() + RESERVATION_LIFETIME
            self.table.add_reservation(Reservation(token, (host, port + 1), user, link.five_tuple, expires, spare))
            return sock, token
        return None, None

    def _lifetime(self, request: Message, *, allow_zero: bool) -> int:
        """RFC 8656 §7.2 / §7.3: min(requested, maximum), at least the default."""
        value = request.get(Attr.LIFETIME)
        maximum = max(1, self.limits.max_lifetime)
        default = min(DEFAULT_LIFETIME, maximum)
        if value is None:
            return default
        requested = codec.unpack_u32(value, "LIFETIME")
        if requested == 0 and allow_zero:
            return 0
        return max(default, min(requested, maximum))

    def _owned(self, link: Link, request: Message, auth: Auth) -> Allocation | None:
        """The allocation of this 5-tuple, or None after answering 437 / 441."""
        allocation = self.table.by_five_tuple.get(link.five_tuple)
        if allocation is None or allocation.relay is None:
            self.replier.error(link, request, 437, auth)
            return None
        if allocation.username != auth.username:
            # RFC 8656 §5: requests on an allocation must use its credentials.
            self.replier.error(link, request, 441, auth)
            return None
        return allocation

    # --- Refresh (RFC 8656 §7.3) ---------------------------------------------

    def on_refresh(self, link: Link, request: Message, auth: Auth) -> None:
        allocation = self._owned(link, request, auth)
        if allocation is None:
            return
        family_value = request.get(Attr.REQUESTED_ADDRESS_FAMILY)
        if family_value is not None:
            local_family = codec.FAMILY_IPV6 if ":" in allocation.relayed[0] else codec.FAMILY_IPV4
            if codec.unpack_address_family(family_value) != local_family:
                self.replier.error(link, request, 443, auth)
                return
        lifetime = self._lifetime(request, allow_zero=True)
        if lifetime == 0:
            self.delete(allocation, "refreshed to 0")
        else:
            allocation.expires = self.clock() + lifetime
        self.replier.respond(link, request, Class.SUCCESS, [(Attr.LIFETIME, codec.pack_u32(lifetime))], auth)

    # --- CreatePermission (RFC 8656 §9) --------------------------------------

    def _peer(
        self, request: Message, value: bytes, allocation: Allocation, *, with_port: bool
    ) -> tuple[Address | None, int, str]:
        """The decoded peer, or None with an error code and reason.

        The relay policy comes before the family check, so that a forbidden
        address is a 403 in every spelling (an IPv4-mapped one is IPv4 here).
        ``with_port`` applies the per-port rules (ChannelBind, Send); a
        permission is for an IP address only (RFC 8656 §9).
        """
        host, port = codec.unpack_xor_address(value, request.transaction_id)
        address = normalize_ip(host)
        if address is None:
            return None, 400, "bad peer address"
        peer = (str(address), port)
        if with_port:
            refusal = self._peer_refusal((host, port))
        else:
            refusal = peer_ip_refusal(
                host, allow_loopback=self.limits.allow_loopback_peers, own_addresses=self.own_addresses
            )
        if refusal is not None:
            return None, 403, f"Forbidden IP: {refusal}"
        relay_is_v6 = ":" in allocation.relayed[0]
        if (address.version == 6) != relay_is_v6:
            return None, 443, "peer address family differs from the relayed address"
        return peer, 0, ""

    def on_create_permission(self, link: Link, request: Message, auth: Auth) -> None:
        allocation = self._owned(link, request, auth)
        if allocation is None:
            return
        values = request.get_all(Attr.XOR_PEER_ADDRESS)
        if not values:
            self.replier.error(link, request, 400, auth, reason="XOR-PEER-ADDRESS missing")
            return
        peers: list[str] = []
        for value in values:
            peer, code, reason = self._peer(request, value, allocation, with_port=False)
            if peer is None:
                if code == 403:
                    logger.info("TURN: 403 permission for %r: %s", auth.user, reason)
                self.replier.error(link, request, code, auth, reason=reason)
                return
            peers.append(peer[0])
        now = self.clock()
        for ip in peers:
            if allocation.add_permission(ip, now) is None:
                self.replier.error(link, request, 508, auth, reason="too many permissions")
                return
        self.replier.respond(link, request, Class.SUCCESS, [], auth)

    # --- ChannelBind (RFC 8656 §11.2) ----------------------------------------

    def on_channel_bind(self, link: Link, request: Message, auth: Auth) -> None:
        allocation = self._owned(link, request, auth)
        if allocation is None:
            return
        number = request.get(Attr.CHANNEL_NUMBER)
        value = request.get(Attr.XOR_PEER_ADDRESS)
        if number is None or value is None:
            self.replier.error(link, request, 400, auth, reason="CHANNEL-NUMBER and XOR-PEER-ADDRESS are required")
            return
        channel = codec.unpack_channel_number(number)
        if not codec.CHANNEL_MIN <= channel <= codec.CHANNEL_MAX:
            self.replier.error(link, request, 400, auth, reason="channel number out of range")
            return
        peer, code, reason = self._peer(request, value, allocation, with_port=True)
        if peer is None:
            if code == 403:
                logger.info("TURN: 403 channel for %r: %s", auth.user, reason)
            self.replier.error(link, request, code, auth, reason=reason)
            return
        problem = allocation.channel_refusal(channel, peer)
        if problem is not None:
            self.replier.error(link, request, 400, auth, reason=problem)
            return
        now = self.clock()
        # RFC 8656 §11.2: a ChannelBind also installs or refreshes the permission.
        permission = allocation.add_permission(peer[0], now)
        if permission is None:
            self.replier.error(link, request, 508, auth, reason="too many permissions")
            return
        allocation.bind_channel(channel, peer, now, permission, to_appliance=self._to_appliance(peer))
        self.replier.respond(link, request, Class.SUCCESS, [], auth)

    def _peer_refusal(self, peer: Address) -> str | None:
        """The relay policy for ``peer`` as the client spelled it."""
        return peer_refusal(
            peer[0],
            peer[1],
            allow_loopback=self.limits.allow_loopback_peers,
            own_addresses=self.own_addresses,
            forbidden_ports=self.forbidden_ports,
            relayed=self.table.by_relayed,
        )

    # --- Send indications and ChannelData from clients (RFC 8656 §10.2, §12.5) ---

    def on_send(self, link: Link, message: Message) -> None:
        allocation = self.table.by_five_tuple.get(link.five_tuple)
        value = message.get(Attr.XOR_PEER_ADDRESS)
        payload = message.get(Attr.DATA)
        if allocation is None or allocation.relay_sendto is None or value is None or payload is None:
            self.counters["packets_dropped"] += 1
            return
        try:
            host, port = codec.unpack_xor_address(value, message.transaction_id)
        except StunError:
            self.counters["packets_dropped"] += 1
            return
        # The policy and family checks for a peer are worked out once per allocation.
        route = allocation.send_routes.get((host, port))
        if route is None:
            peer, _, _ = self._peer(message, value, allocation, with_port=True)
            if peer is None:
                self.counters["packets_dropped"] += 1
                return
            if len(allocation.send_routes) >= MAX_PERMISSIONS_PER_ALLOCATION:
                allocation.send_routes.clear()
            route = allocation.send_routes[(host, port)] = (peer, self._to_appliance(peer))
        peer, to_appliance = route
        now = self.clock()
        if not allocation.has_permission(peer[0], now) or (to_appliance and peer not in self.table.by_relayed):
            self.counters["packets_dropped"] += 1
            return
        if allocation.bucket is not None and not allocation.bucket.take(now, len(payload)):
            self.counters["packets_dropped"] += 1
            return
        self._to_peer(allocation, payload, peer)

    def _to_appliance(self, peer: Address) -> bool:
        """Whether a route to this (allowed) peer leads to the appliance itself.

        There the relay policy allows only the relayed addresses of live
        allocations (:func:`~meshcall.turn.policy.peer_refusal`): the one part
        of it that changes after a route is worked out, so such a route checks
        again on every packet. (Loopback, where allowed at all, is open but for
        fixed service ports.)
        """
        address = normalize_ip(peer[0])
        return address is not None and not address.is_loopback and peer[0] in self.own_addresses

    def _to_peer(self, allocation: Allocation, payload: bytes | memoryview, peer: Address) -> None:
        sendto = allocation.relay_sendto
        if sendto is None:  # not set up yet, or closed: the callers check, this is for mypy
            return
        try:
            # Straight to the socket: a full buffer drops the datagram, as a router would.
            sendto(payload, peer)
        except OSError as exc:
            self.counters["packets_dropped"] += 1
            logger.debug("TURN: relay %s to %s: %s", allocation.relayed, peer, exc)
            return
        allocation.packets_to_peer += 1
        allocation.bytes_relayed += len(payload)

    def on_channel_data(self, allocation: Allocation | None, data: bytes | memoryview) -> None:
        # RFC 8656 §12.5: ChannelData from the client goes to the bound peer, along the
        # route worked out at ChannelBind.
        try:
            if allocation is None or allocation.relay_sendto is None or len(data) < 4:
                self.counters["packets_dropped"] += 1
                return
            channel, length = _CHANNEL_HEADER.unpack_from(data, 0)
            binding = allocation.channels.get(channel)
            now = self.clock()
            if binding is None or 4 + length > len(data) or not binding.usable(now):
                self.counters["packets_dropped"] += 1
                return
            if binding.to_appliance and binding.peer not in self.table.by_relayed:
                self.counters["packets_dropped"] += 1
                return
            if allocation.bucket is not None and not allocation.bucket.take(now, length):
                self.counters["packets_dropped"] += 1
                return
            # A view for UDP (the listener's buffer, not copied); a copy of a TCP frame.
            self._to_peer(allocation, data[4 : 4 + length], binding.peer)
        except Exception:  # noqa: BLE001 - the last line of defence; logged loudly
            logger.exception("TURN: internal error on ChannelData")

    # --- packets from peers (RFC 8656 §10.3, §12.6) ---------------------------

    def on_peer_packet(self, allocation: Allocation, buffer: memoryview, size: int, peer: Address) -> None:
        """A datagram from a peer, at ``buffer[4:4 + size]`` with 4 free bytes in front.

        The buffer is the relay socket's (see
        :class:`~meshcall.turn.transports.RelaySocket`): used now, never kept.
        """
        try:
            if allocation.closed:
                return
            if size > MAX_RELAY_PAYLOAD:
                self.counters["packets_dropped"] += 1
                return
            now = self.clock()
            binding = allocation.peer_channels.get(peer)
            if binding is None or not binding.usable(now):
                # No channel: the permission alone decides (RFC 8656 §10.3).
                binding = None
                if not allocation.has_permission(peer[0], now):
                    self.counters["packets_dropped"] += 1
                    return
            if allocation.bucket is not None and not allocation.bucket.take(now, size):
                self.counters["packets_dropped"] += 1
                return
            link = allocation.link
            if binding is not None and not link.stream:
                # RFC 8656 §12.6: the channel's header written in front of the datagram,
                # sent from the relay's buffer as it is.
                _CHANNEL_HEADER.pack_into(buffer, 0, binding.channel, size)
                link.send(buffer[: CHANNEL_HEADER_ROOM + size])
            elif binding is not None:
                # Over TCP padded to a multiple of 4 (RFC 8656 §12.5).
                link.send(binding.prefix + size.to_bytes(2, "big") + buffer[4 : 4 + size] + bytes(-size % 4))
            else:
                indication = Message(Method.DATA, Class.INDICATION, os.urandom(12))
                indication.add(Attr.XOR_PEER_ADDRESS, codec.pack_xor_address(peer[0], peer[1], indication.transaction_id))
                indication.add(Attr.DATA, bytes(buffer[4 : 4 + size]))
                link.send(indication.encode())
            allocation.packets_to_client += 1
            allocation.bytes_relayed += size
        except Exception:  # noqa: BLE001 - the last line of defence; logged loudly
            logger.exception("TURN: internal error relaying from %s to %s", peer, allocation.relayed)
