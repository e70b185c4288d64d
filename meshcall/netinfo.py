"""What this machine is called and where it can be reached on the LAN."""

from __future__ import annotations

import ipaddress
import re
import socket

import ifaddr

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

LOCAL = ".local"
LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


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
    return sorted(found, key=address_order)


def address_order(address: IPAddress) -> tuple[int, bool, int]:
    """Sort key for addresses as people see them listed: IPv4 first, loopback last, then by value."""
    return (address.version, address.is_loopback, int(address))


def lan_addresses() -> list[IPAddress]:
    """Addresses other devices may use to reach this one; loopback only when nothing else exists."""
    lan = interface_addresses(include_loopback=False)
    return lan or [ipaddress.ip_address("127.0.0.1")]


def url_host(addr: IPAddress | str) -> str:
    """An address as it goes in a URL: IPv6 in brackets (Tornado's host_name keeps them)."""
    text = str(addr)
    return f"[{text}]" if ":" in text and not text.startswith("[") else text


def alias_label(text: str) -> str:
    """The one DNS label of an alias: `meshcall.local`, `Meshcall` → `meshcall`.

    Raises ValueError for anything that cannot be a single .local host name."""
    name = text.strip().lower().rstrip(".")
    if name.endswith(LOCAL):
        name = name[: -len(LOCAL)]
    if not LABEL_RE.match(name):
        raise ValueError(f"{text!r} is not a .local name (letters, digits and '-', e.g. meshcall.local)")
    return name
