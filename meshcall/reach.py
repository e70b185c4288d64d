"""The addresses and names people may join with: only those the served certificate
covers. A link the certificate does not name ends on a browser warning that no device
can get past for camera access, so it is better not printed at all; the admin gets one
line saying why and what to do instead."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from cryptography import x509

from . import netinfo
from .listen import EVERY_IPV4, is_wildcard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeftOut:
    host: str  # as it goes in a URL
    reason: str


def certificate_names(leaf: x509.Certificate) -> tuple[set[str], set[netinfo.IPAddress]]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    dns = {n.lower().rstrip(".") for n in san.get_values_for_type(x509.DNSName)}
    ips = {ip for ip in san.get_values_for_type(x509.IPAddress)
           if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address))}
    return dns, ips


def covers(leaf: x509.Certificate, host: str) -> bool:
    """Whether a browser accepts the leaf for `host` (an address or a DNS name):
    RFC 6125 matching, a wildcard standing for exactly one leftmost label."""
    dns, ips = certificate_names(leaf)
    try:
        return ipaddress.ip_address(host.strip("[]")) in ips
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    if name in dns:
        return True
    head, _, rest = name.partition(".")
    return bool(rest) and f"*.{rest}" in dns


def candidate_hosts(host_setting: str, names: list[str]) -> list[str]:
    """Every address and name the appliance could be reached by, addresses first (they
    work on every device; .local needs mDNS support on the device)."""
    if is_wildcard(host_setting):
        addrs = netinfo.lan_addresses()
        if host_setting == EVERY_IPV4:
            addrs = [a for a in addrs if a.version == 4] or addrs
        hosts = [netinfo.url_host(a) for a in addrs]
    else:
        hosts = [netinfo.url_host(host_setting)]
    return list(dict.fromkeys(hosts + names))


def join_hosts(host_setting: str, names: list[str], leaf: x509.Certificate | None,
               own_ca: bool) -> tuple[list[str], list[LeftOut]]:
    """(hosts to print, hosts left out with the reason). Without a certificate (behind a
    TLS-terminating proxy) the proxy's certificate is not ours to judge: all are kept."""
    hosts = candidate_hosts(host_setting, names)
    if leaf is None:
        return hosts, []
    kept = [h for h in hosts if covers(leaf, h)]
    left: list[LeftOut] = []
    for h in hosts:
        if h in kept:
            continue
        if own_ca:
            reason = ("a public address: this installation's certificate authority may vouch only for "
                      "local names and private address ranges")
        else:
            reason = "the certificate given with --cert does not name it"
        left.append(LeftOut(h, reason))
    return kept, left


def log_left_out(left: list[LeftOut], name_url: str | None) -> None:
    """One line per address left out: why, and what to do instead."""
    instead = f"join by {name_url} instead, or " if name_url else ""
    for item in left:
        log.info("join: %s left out: %s; %sgive --cert/--key with a certificate that names it",
                 item.host, item.reason, instead)
