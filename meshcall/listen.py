"""Which addresses the appliance listens on, for IPv4 and IPv6 alike.

`--host ::` (the default), `*` or an empty value mean every address of both families;
`0.0.0.0` every IPv4 address; anything else that one address. A machine without IPv6
(disabled in the kernel, or an address still in duplicate address detection) is normal
on a LAN: the IPv6 half then gets one log line and the appliance runs on IPv4."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from typing import Callable, TypeVar

from tornado import netutil

from . import netinfo

log = logging.getLogger(__name__)

EVERY_ADDRESS = ("", "*", "::")
EVERY_IPV4 = "0.0.0.0"
LISTEN_BACKLOG = 128  # Tornado's default


class BindError(Exception):
    """A port cannot be listened on; one line for the admin."""


def is_wildcard(host: str) -> bool:
    return host in EVERY_ADDRESS or host == EVERY_IPV4


def wants_ipv6(host: str) -> bool:
    return host in EVERY_ADDRESS


class Listener:
    """Binds the appliance's TCP ports; remembers that IPv6 failed so it is said once."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.ipv6_failed = False

    def bind(self, port: int, what: str, flag: str) -> list[socket.socket]:
        if not is_wildcard(self.host):
            return _bind(port, self.host, what, flag)
        # IPv4 first and on its own: it must work. IPv6 then on the same port, V6ONLY so
        # the two never fight over IPv4.
        socks = [_checked(lambda: _wildcard_socket(socket.AF_INET, port), port, EVERY_IPV4, what, flag)]
        port = socks[0].getsockname()[1]
        if not wants_ipv6(self.host) or self.ipv6_failed:
            return socks
        try:
            socks.append(_wildcard_socket(socket.AF_INET6, port))
        except OSError as exc:
            self.ipv6_failed = True
            log.warning("IPv6: cannot listen on [::]:%d (%s); serving IPv4 only", port, exc.strerror or exc)
        return socks

    def addresses(self) -> list[str]:
        """The interface addresses a service that needs one socket per address (TURN)
        listens on; IPv6 addresses that cannot be bound right now are left out."""
        if not is_wildcard(self.host):
            return [self.host]
        addrs = netinfo.interface_addresses(include_loopback=True)
        if self.host == EVERY_IPV4:
            return [str(a) for a in addrs if a.version == 4]
        usable = [str(a) for a in addrs if a.version == 4 or (not self.ipv6_failed and _bindable(a))]
        if not self.ipv6_failed and any(a.version == 6 for a in addrs) and len(usable) < len(addrs):
            log.warning("IPv6: some addresses cannot be used yet; the relay listens on %s", ", ".join(usable))
        return usable


def _bindable(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind((str(addr), 0))
        return True
    except OSError:
        return False


def _wildcard_socket(family: socket.AddressFamily, port: int) -> socket.socket:
    """A listening socket on every address of one family, as Tornado's bind_sockets
    makes it, but closed again when binding fails."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let another process share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setblocking(False)
        sock.bind(("::" if family == socket.AF_INET6 else EVERY_IPV4, port))
        sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind(port: int, host: str, what: str, flag: str) -> list[socket.socket]:
    return _checked(lambda: netutil.bind_sockets(port, address=host), port, host, what, flag)


T = TypeVar("T")


def _checked(make: Callable[[], T], port: int, shown: str, what: str, flag: str) -> T:
    """make(), with an OSError turned into one line for the admin."""
    try:
        return make()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise BindError(f"{what} port {port} on {shown} is already in use "
                            f"(another meshcall? choose another with {flag})") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise BindError(f"{what} port {port}: permission denied (ports below 1024 need privileges)") from None
        raise BindError(f"{what} port {port} on {shown}: {exc.strerror or exc}") from None
