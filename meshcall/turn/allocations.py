"""The allocation table (RFC 8656 §5-§12): allocations, permissions, channels, quotas.

No sockets here: the server attaches a relay handle and a way to reach the
client to each allocation, and asks this table what is allowed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Protocol

from .limits import CHANNEL_LIFETIME, MAX_CHANNELS_PER_ALLOCATION, MAX_PERMISSIONS_PER_ALLOCATION, PERMISSION_LIFETIME
from ..buckets import Bucket

Address = tuple[str, int]
# RFC 8656 §2: the 5-tuple, with the protocol as "udp" or "tcp".
FiveTuple = tuple[str, Address, Address]


class Relay(Protocol):
    """What an allocation needs from its relay socket."""

    def sendto(self, data: bytes | memoryview, addr: Address, /) -> object: ...

    def close(self) -> None: ...


class Closable(Protocol):
    """A socket, as far as a reservation is concerned."""

    def close(self) -> None: ...


class ClientLink(Protocol):
    """How to reach the client of an allocation (UDP or TCP)."""

    stream: bool

    def send(self, data: bytes | memoryview) -> None: ...


class Permission:
    """A permission for one peer IP (RFC 8656 §9): mutable, so routes can hold it."""

    __slots__ = ("expires",)

    def __init__(self, expires: float) -> None:
        self.expires = expires


class ChannelBinding:
    """A channel (RFC 8656 §12): the route of its packets, worked out once at ChannelBind.

    It holds the peer, the permission of the peer's IP (the same object the
    allocation keeps, so a CreatePermission refreshes the route too) and the
    ChannelData header prefix, so relaying a packet needs no lookup by IP
    and no encoding beyond the length.
    """

    __slots__ = ("channel", "peer", "expires", "permission", "prefix", "to_appliance")

    def __init__(self, channel: int, peer: Address, expires: float, permission: Permission, to_appliance: bool) -> None:
        self.channel = channel
        self.peer = peer
        self.expires = expires
        self.permission = permission
        self.prefix = channel.to_bytes(2, "big")
        # A peer on the appliance itself (another allocation's relayed address) is
        # checked on every packet: that allocation may be gone.
        self.to_appliance = to_appliance

    def usable(self, now: float) -> bool:
        """Bound, and its peer's permission in force (RFC 8656 §12.5, §12.6)."""
        return self.expires > now and self.permission.expires > now


@dataclass(eq=False)
class Allocation:
    """One allocation: a relayed transport address owned by one 5-tuple."""

    five_tuple: FiveTuple
    username: str
    user: str
    transaction_id: bytes
    relayed: Address
    expires: float
    bucket: Bucket | None  # bytes per second; None: no limit
    link: ClientLink
    relay: Relay | None = None
    # The relay socket's own sendto, for the relaying fast path (the server sets it).
    relay_sendto: Callable[[bytes | memoryview, Address], object] | None = None
    success_response: bytes = b""
    permissions: dict[str, Permission] = field(default_factory=dict)
    channels: dict[int, ChannelBinding] = field(default_factory=dict)
    peer_channels: dict[Address, ChannelBinding] = field(default_factory=dict)
    # Send indications: the peer as spelled -> (the peer, whether it is on the appliance),
    # once the relay policy allowed it.
    send_routes: dict[Address, tuple[Address, bool]] = field(default_factory=dict)
    closed: bool = False
    packets_to_peer: int = 0
    packets_to_client: int = 0
    bytes_relayed: int = 0

    def has_permission(self, ip: str, now: float) -> bool:
        permission = self.permissions.get(ip)
        return permission is not None and permission.expires > now

    def add_permission(self, ip: str, now: float) -> Permission | None:
        """Install or refresh a permission (RFC 8656 §9); None if over the cap."""
        permission = self.permissions.get(ip)
        if permission is None:
            if len(self.permissions) >= MAX_PERMISSIONS_PER_ALLOCATION:
                return None
            permission = self.permissions[ip] = Permission(0.0)
        permission.expires = now + PERMISSION_LIFETIME
        return permission

    def channel_refusal(self, channel: int, peer: Address) -> str | None:
        """Why binding ``channel`` to ``peer`` is refused (RFC 8656 §11.2, 400), or None."""
        current = self.channels.get(channel)
        if current is not None and current.peer != peer:
            return f"channel {channel:#06x} is bound to another peer"
        bound = self.peer_channels.get(peer)
        if bound is not None and bound.channel != channel:
            return f"peer is bound to channel {bound.channel:#06x}"
        if current is None and len(self.channels) >= MAX_CHANNELS_PER_ALLOCATION:
            return "too many channels"
        return None

    def bind_channel(self, channel: int, peer: Address, now: float, permission: Permission, *, to_appliance: bool) -> None:
        """Bind or refresh a channel that :meth:`channel_refusal` allowed."""
        binding = self.channels.get(channel)
        if binding is None:
            binding = self.channels[channel] = ChannelBinding(channel, peer, 0.0, permission, to_appliance)
            self.peer_channels[peer] = binding
        binding.expires = now + CHANNEL_LIFETIME

    def expire_children(self, now: float) -> None:
        """Drop expired channel bindings, then expired permissions no binding refers to.

        A binding keeps its permission object (expired, so it refuses) until
        the binding goes, so a later CreatePermission revives that same object.
        """
        for channel in [c for c, b in self.channels.items() if b.expires <= now]:
            binding = self.channels.pop(channel)
            self.peer_channels.pop(binding.peer, None)
        held = {id(b.permission) for b in self.channels.values()}
        for ip in [ip for ip, p in self.permissions.items() if p.expires <= now and id(p) not in held]:
            del self.permissions[ip]


@dataclass(eq=False)
class Reservation:
    """A port held for a later allocation (RFC 8656 §7.2, EVEN-PORT with R).

    It counts against the quotas of the person and address that asked for it,
    expires on its own, and goes when the allocation that made it (``owner``)
    goes.
    """

    token: bytes
    address: Address
    user: str
    owner: FiveTuple
    expires: float
    handle: Closable  # the bound socket, closed when the reservation is dropped

    @property
    def client_ip(self) -> str:
        return self.owner[1][0]


class AllocationTable:
    """All allocations, by 5-tuple and by relayed address, with quotas.

    An allocation being set up ("pending") and a port reservation count like
    an allocation against every quota: in total, per person (``user``, the
    peer id of a REST username) and per client IP address.
    """

    def __init__(self, max_allocations: int, max_allocations_per_user: int, max_allocations_per_ip: int) -> None:
        self.max_allocations = max_allocations
        self.max_allocations_per_user = max_allocations_per_user
        self.max_allocations_per_ip = max_allocations_per_ip
        self.by_five_tuple: dict[FiveTuple, Allocation] = {}
        self.by_relayed: dict[Address, Allocation] = {}
        self.pending: dict[FiveTuple, str] = {}  # 5-tuple -> user
        self.reservations: dict[bytes, Reservation] = {}
        self.held = 0
        self.per_user: Counter[str] = Counter()
        self.per_ip: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self.by_five_tuple)

    def _hold(self, user: str, ip: str) -> None:
        self.held += 1
        self.per_user[user] += 1
        self.per_ip[ip] += 1

    def _unhold(self, user: str, ip: str) -> None:
        self.held -= 1
        for counter, key in ((self.per_user, user), (self.per_ip, ip)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def quota_refusal(self, user: str, ip: str, count: int = 1) -> str | None:
        """Why ``count`` more allocations for this person from this address are over quota (486), or None."""
        if self.held + count > self.max_allocations:
            return "server allocation quota reached"
        if self.per_user[user] + count > self.max_allocations_per_user:
            return "user allocation quota reached"
        if self.per_ip[ip] + count > self.max_allocations_per_ip:
            return "address allocation quota reached"
        return None

    def reserve(self, five_tuple: FiveTuple, user: str) -> None:
        """Count an allocation being set up against the quotas."""
        if five_tuple not in self.pending:
            self.pending[five_tuple] = user
            self._hold(user, five_tuple[1][0])

    def release(self, five_tuple: FiveTuple) -> None:
        """Stop counting an allocation that was being set up."""
        user = self.pending.pop(five_tuple, None)
        if user is not None:
            self._unhold(user, five_tuple[1][0])

    def add(self, allocation: Allocation) -> None:
        self.release(allocation.five_tuple)
        self.by_five_tuple[allocation.five_tuple] = allocation
        self.by_relayed[allocation.relayed] = allocation
        self._hold(allocation.user, allocation.five_tuple[1][0])

    def remove(self, allocation: Allocation) -> None:
        if self.by_five_tuple.get(allocation.five_tuple) is not allocation:
            return
        del self.by_five_tuple[allocation.five_tuple]
        self.by_relayed.pop(allocation.relayed, None)
        self._unhold(allocation.user, allocation.five_tuple[1][0])
        allocation.closed = True

    def add_reservation(self, reservation: Reservation) -> None:
        self.reservations[reservation.token] = reservation
        self._hold(reservation.user, reservation.client_ip)

    def take_reservation(self, token: bytes) -> Reservation | None:
        """Remove and return a reservation (its handle is the caller's now), or None."""
        reservation = self.reservations.pop(token, None)
        if reservation is not None:
            self._unhold(reservation.user, reservation.client_ip)
        return reservation

    def reservations_where(self, keep: Callable[[Reservation], bool]) -> list[Reservation]:
        return [r for r in self.reservations.values() if keep(r)]

    def expired(self, now: float) -> list[Allocation]:
        """Allocations whose lifetime has run out (the caller removes them)."""
        return [a for a in self.by_five_tuple.values() if a.expires <= now]
