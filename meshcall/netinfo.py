"""What this machine is called and where it can be reached on the LAN."""

from __future__ import annotations

import ipaddress
import socket

import ifaddr

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def hostname() -> str:
    """The short host name, lower-case (what mDNS announces as <name>.local)."""
    name = socket.gethostname().split(".")[0].strip().lower()
    return name or "localhost"


def interface_addresses(include_loopback: bool = True) -> list[IPAddress]:
    """Every address of every interface, IPv4 first, without scoped link-local IPv6
    (a URL or certificate cannot name those usefully)."""
    found: set[IPAddress] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            raw = ip.ip[0] if isinstance(ip.ip, tuple) else ip.ip
            try:
                addr = ipaddress.ip_address(raw)
            except ValueError:
                continue
            if addr.is_link_local and addr.version == 6:
                continue
            if addr.is_loopback and not include_loopback:
                continue
            found.add(addr)
    if include_loopback:
        found.add(ipaddress.ip_address("127.0.0.1"))
    return sorted(found, key=lambda a: (a.version, a.is_loopback, int(a)))


def lan_addresses() -> list[IPAddress]:
    """Addresses other devices may use to reach this one; loopback only when nothing else exists."""
    lan = interface_addresses(include_loopback=False)
    return lan or [ipaddress.ip_address("127.0.0.1")]


def url_host(addr: IPAddress | str) -> str:
    """An address as it goes in a URL: IPv6 in brackets (Tornado's host_name keeps them)."""
    text = str(addr)
    return f"[{text}]" if ":" in text and not text.startswith("[") else text
