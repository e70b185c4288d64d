"""The allocation table (RFC 8656 §5-§12): allocations, permissions, channels, quotas.

No sockets here: the server attaches a relay handle and a way to reach the
client to each allocation, and asks this table what is allowed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from .policy import TokenBucket

Address = tuple[str, int]
# RFC 8656 §2: the 5-tuple, with the protocol as "udp" or "tcp".
FiveTuple = tuple[str, Address, Address]

# RFC 8656 §9: permissions last 300 s; §12: channel bindings 600 s.
PERMISSION_LIFETIME = 300.0
CHANNEL_LIFETIME = 600.0
# RFC 8656 §3.2: the default allocation lifetime.
DEFAULT_LIFETIME = 600
# Named limits per allocation.
MAX_PERMISSIONS_PER_ALLOCATION = 64
MAX_CHANNELS_PER_ALLOCATION = 64


class Relay(Protocol):
    """What an allocation needs from its relay socket."""

    def sendto(self, data: bytes, addr: Address) -> None: ...

    def close(self) -> None: ...


class ClientLink(Protocol):
    """How to reach the client of an allocation (UDP or TCP)."""

    stream: bool

    def send(self, data: bytes) -> None: ...


@dataclass
class ChannelBinding:
    peer: Address
    expires: float


@dataclass(eq=False)
class Allocation:
    """One allocation: a relayed transport address owned by one 5-tuple."""

    five_tuple: FiveTuple
    username: str
    user: str
    transaction_id: bytes
    relayed: Address
    expires: float
    bucket: TokenBucket
    link: ClientLink
    relay: Relay | None = None
    success_response: bytes = b""
    permissions: dict[str, float] = field(default_factory=dict)
    channels: dict[int, ChannelBinding] = field(default_factory=dict)
    peer_channels: dict[Address, int] = field(default_factory=dict)
    closed: bool = False
    packets_to_peer: int = 0
    packets_to_client: int = 0
    bytes_relayed: int = 0

    def has_permission(self, ip: str, now: float) -> bool:
        return self.permissions.get(ip, 0.0) > now

    def add_permission(self, ip: str, now: float) -> bool:
        """Install or refresh a permission (RFC 8656 §9); False if over the cap."""
        if ip not in self.permissions and len(self.permissions) >= MAX_PERMISSIONS_PER_ALLOCATION:
            return False
        self.permissions[ip] = now + PERMISSION_LIFETIME
        return True

    def bind_channel(self, channel: int, peer: Address, now: float) -> str | None:
        """Bind or refresh a channel (RFC 8656 §11.2); the reason for a 400, or None."""
        current = self.channels.get(channel)
        if current is not None and current.peer != peer:
            return f"channel {channel:#06x} is bound to another peer"
        bound = self.peer_channels.get(peer)
        if bound is not None and bound != channel:
            return f"peer is bound to channel {bound:#06x}"
        if current is None and len(self.channels) >= MAX_CHANNELS_PER_ALLOCATION:
            return "too many channels"
        self.channels[channel] = ChannelBinding(peer, now + CHANNEL_LIFETIME)
        self.peer_channels[peer] = channel
        return None

    def channel_peer(self, channel: int, now: float) -> Address | None:
        binding = self.channels.get(channel)
        if binding is None or binding.expires <= now:
            return None
        return binding.peer

    def peer_channel(self, peer: Address, now: float) -> int | None:
        channel = self.peer_channels.get(peer)
        if channel is None:
            return None
        binding = self.channels.get(channel)
        if binding is None or binding.expires <= now:
            return None
        return channel

    def expire_children(self, now: float) -> None:
        """Drop expired permissions and channel bindings."""
        for ip in [ip for ip, expires in self.permissions.items() if expires <= now]:
            del self.permissions[ip]
        for channel in [c for c, b in self.channels.items() if b.expires <= now]:
            binding = self.channels.pop(channel)
            self.peer_channels.pop(binding.peer, None)


class AllocationTable:
    """All allocations, by 5-tuple and by relayed address, with quotas."""

    def __init__(self, max_allocations: int, max_allocations_per_user: int) -> None:
        self.max_allocations = max_allocations
        self.max_allocations_per_user = max_allocations_per_user
        self.by_five_tuple: dict[FiveTuple, Allocation] = {}
        self.by_relayed: dict[Address, Allocation] = {}
        self.per_user: Counter[str] = Counter()
        self.pending: set[FiveTuple] = set()
        self.pending_per_user: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self.by_five_tuple)

    def quota_refusal(self, user: str) -> str | None:
        """Why a new allocation for this user is over quota (486), or None."""
        if len(self.by_five_tuple) + len(self.pending) >= self.max_allocations:
            return "server allocation quota reached"
        if self.per_user[user] + self.pending_per_user[user] >= self.max_allocations_per_user:
            return "user allocation quota reached"
        return None

    def reserve(self, five_tuple: FiveTuple, user: str) -> None:
        """Count an allocation being set up against the quotas."""
        self.pending.add(five_tuple)
        self.pending_per_user[user] += 1

    def release(self, five_tuple: FiveTuple, user: str) -> None:
        if five_tuple in self.pending:
            self.pending.discard(five_tuple)
            self.pending_per_user[user] -= 1
            if self.pending_per_user[user] <= 0:
                del self.pending_per_user[user]

    def add(self, allocation: Allocation) -> None:
        self.release(allocation.five_tuple, allocation.user)
        self.by_five_tuple[allocation.five_tuple] = allocation
        self.by_relayed[allocation.relayed] = allocation
        self.per_user[allocation.user] += 1

    def remove(self, allocation: Allocation) -> None:
        if self.by_five_tuple.get(allocation.five_tuple) is not allocation:
            return
        del self.by_five_tuple[allocation.five_tuple]
        self.by_relayed.pop(allocation.relayed, None)
        self.per_user[allocation.user] -= 1
        if self.per_user[allocation.user] <= 0:
            del self.per_user[allocation.user]
        allocation.closed = True

    def expired(self, now: float) -> list[Allocation]:
        """Allocations whose lifetime has run out (the caller removes them)."""
        return [a for a in self.by_five_tuple.values() if a.expires <= now]
