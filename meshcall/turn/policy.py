"""Which peers a relay may talk to, and how fast: the "not an open relay" rules.

Pure functions and a token bucket; no I/O.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# 255.255.255.255, the limited broadcast address (RFC 919).
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
# 0.0.0.0/8, "this network" (RFC 1122 §3.2.1.3): never a valid destination.
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def normalize_ip(host: str) -> IPAddress | None:
    """The address, with IPv4-mapped IPv6 turned into IPv4; None if not an IP."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def peer_ip_refusal(host: str, *, allow_loopback: bool) -> str | None:
    """Why a permission to this peer IP must be refused (403), or None if allowed."""
    address = normalize_ip(host)
    if address is None:
        return "not an IP address"
    if address.is_unspecified or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK):
        return "unspecified address"
    if address.is_multicast:
        # Covers IPv4 link-local multicast 224.0.0.0/24 and IPv6 ff00::/8.
        return "multicast address"
    if address == _BROADCAST:
        return "broadcast address"
    if address.is_loopback and not allow_loopback:
        return "loopback address"
    return None


def peer_refusal(
    host: str,
    port: int,
    *,
    allow_loopback: bool,
    own_addresses: frozenset[str],
    forbidden_ports: frozenset[int],
) -> str | None:
    """Why relaying to (host, port) must be refused, or None if allowed.

    Adds to :func:`peer_ip_refusal` the appliance's own service ports: a
    relay must not become a way into the HTTPS server or the TURN port itself
    from the inside. Other ports on its own addresses (such as another
    client's relayed address) stay reachable.
    """
    reason = peer_ip_refusal(host, allow_loopback=allow_loopback)
    if reason is not None:
        return reason
    if not 0 < port <= 0xFFFF:
        return f"port {port} out of range"
    address = normalize_ip(host)
    if port in forbidden_ports and address is not None and str(address) in own_addresses:
        return f"the appliance's own service port {port}"
    return None


class TokenBucket:
    """Bytes per second with a burst of one second's worth; excess is refused."""

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, now: float, burst_seconds: float = 1.0) -> None:
        self.rate = float(rate)
        self.capacity = max(float(rate) * burst_seconds, 65536.0)
        self.tokens = self.capacity
        self.stamp = now

    def take(self, amount: int, now: float) -> bool:
        """Spend ``amount`` tokens if there are enough; refill first."""
        if self.rate <= 0:
            return True  # no limit configured
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False
