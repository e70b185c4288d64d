"""Which peers a relay may talk to, and how fast: the "not an open relay" rules.

Pure functions; no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container

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


# IPv6 prefixes that carry an IPv4 address a router may deliver to: the NAT64
# well-known prefix (RFC 6052 §2.1), its local-use sibling (RFC 8215), and
# 6to4 (RFC 3056 §2). ::ffff:0:0/96 (mapped) and ::/96 (compatible, RFC 4291
# §2.5.5) are read directly.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_COMPATIBLE = ipaddress.IPv6Network("::/96")


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address spells out, by every embedding a network may honour."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    packed = address.packed
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in _COMPATIBLE and int(address) > 1:  # not :: or ::1
        found.append(ipaddress.IPv4Address(packed[12:]))
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(packed[12:]))
    if address in _NAT64_LOCAL:
        # RFC 6052 §2.2, /48: 16 bits, the reserved octet u (bits 64-71), 16 bits.
        found.append(ipaddress.IPv4Address(packed[6:8] + packed[9:11]))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)  # RFC 4380 §4: the server and the (obfuscated) client
    return found


def _address_refusal(address: IPAddress, *, allow_loopback: bool, own_addresses: frozenset[str]) -> str | None:
    if address.is_unspecified or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK):
        return "unspecified address"
    if address.is_multicast:
        # Covers IPv4 link-local multicast 224.0.0.0/24 and IPv6 ff00::/8.
        return "multicast address"
    if address == _BROADCAST:
        return "broadcast address"
    if address.is_loopback and not allow_loopback:
        return "loopback address"
    if address.is_link_local and str(address) not in own_addresses:
        # 169.254.0.0/16 (with 169.254.169.254, the cloud metadata service) and fe80::/10:
        # nothing a call needs, and on a link-local-only network the appliance's own
        # address (then subject to the own-address rule) is the exception.
        return "link-local address"
    return None


def peer_ip_refusal(host: str, *, allow_loopback: bool, own_addresses: frozenset[str] = frozenset()) -> str | None:
    """Why a permission to this peer IP must be refused (403), or None if allowed.

    The rules apply to the address and to every IPv4 address it embeds, so
    no IPv6 spelling reaches what the plain one may not; an embedded address
    of the appliance's own is refused too (only its native spelling can be a
    relayed address).
    """
    try:
        # As spelled: an IPv4-mapped address is judged by what it embeds, below.
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    reason = _address_refusal(address, allow_loopback=allow_loopback, own_addresses=own_addresses)
    if reason is not None:
        return reason
    for inner in embedded_ipv4(address):
        reason = _address_refusal(inner, allow_loopback=allow_loopback, own_addresses=frozenset())
        if reason is not None:
            return f"{reason} embedded in IPv6"
        if str(inner) in own_addresses:
            return "the appliance's own address embedded in IPv6"
    return None


def peer_refusal(
    host: str,
    port: int,
    *,
    allow_loopback: bool,
    own_addresses: frozenset[str],
    forbidden_ports: frozenset[int],
    relayed: Container[tuple[str, int]] = (),
) -> str | None:
    """Why relaying to (host, port) must be refused, or None if allowed.

    Adds to :func:`peer_ip_refusal` the appliance's own addresses: a relay
    must not become a way into the appliance from the inside, so every port
    there is refused except the relayed addresses of live allocations
    (``relayed``), which two clients of the same relay talk through. Where
    loopback is allowed (tests on one machine), loopback ports are open but
    for the appliance's service ports (``forbidden_ports``).
    """
    reason = peer_ip_refusal(host, allow_loopback=allow_loopback, own_addresses=own_addresses)
    if reason is not None:
        return reason
    if not 0 < port <= 0xFFFF:
        return f"port {port} out of range"
    address = normalize_ip(host)
    if address is None:  # refused above already; for the type checker
        return "not an IP address"
    text = str(address)
    if not address.is_loopback and text not in own_addresses:
        return None
    if (text, port) in relayed:
        return None
    if address.is_loopback:
        if port in forbidden_ports:
            return f"the appliance's own service port {port}"
        return None
    return "the appliance's own address (only relayed addresses are reachable there)"
