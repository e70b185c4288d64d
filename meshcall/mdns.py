"""Multicast DNS (RFC 6762) and DNS-SD (RFC 6763): let devices on the LAN find the
appliance as `<host>.local` and an alias (`meshcall.local`) without typing an address.

python-zeroconf runs in its own thread with its own event loop (`use_asyncio=False`):
the appliance's loop never handles mDNS traffic, and the few blocking calls here
(probing, registering, goodbyes) run through `asyncio.to_thread`.

zeroconf answers A/AAAA questions only for the `server` of a registered service, so each
announced name is the server of one service: the alias of an `_https._tcp` service that
points at the join page, the host name of a `_device-info._tcp` service (the record a
Mac announces for itself)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from .listen import EVERY_IPV4, is_wildcard
from .netinfo import LABEL_RE, LOCAL, IPAddress, address_order, interface_addresses

log = logging.getLogger(__name__)

HTTPS_TYPE = "_https._tcp.local."
DEVICE_TYPE = "_device-info._tcp.local."
# RFC 6762 §8.1: three probes 250 ms apart; whoever owns the name answers one of them.
PROBES = 3
PROBE_INTERVAL = 0.25
# Past meshcall-9 something is wrong with the network, not merely crowded.
MAX_SUFFIX = 9


def candidates(label: str) -> list[str]:
    """The label, then label-2 … label-9: the RFC 6762 §9 way of choosing a new name."""
    return [label] + [f"{label}-{n}" for n in range(2, MAX_SUFFIX + 1)]


@dataclass
class Announcement:
    """What is announced: .local names (without the dot at the end) and their addresses."""

    names: list[str] = field(default_factory=list)
    addresses: list[IPAddress] = field(default_factory=list)


class Announcer:
    """One zeroconf instance for the appliance's LAN addresses; blocking, call from a thread."""

    def __init__(self, host_label: str, alias: str, port: int, addresses: Iterable[IPAddress]) -> None:
        self.host_label = host_label
        self.alias = alias
        self.port = port
        self.addresses = sorted(set(addresses), key=address_order)
        self.announced = Announcement()
        self._zc: Any = None
        self._infos: list[Any] = []

    def start(self) -> Announcement:
        """Probe each name, take a free variant, and register; returns what is announced."""
        from zeroconf import IPVersion, Zeroconf

        versions = {a.version for a in self.addresses}
        ip_version = IPVersion.All if versions == {4, 6} else IPVersion.V6Only if versions == {6} else IPVersion.V4Only
        self._zc = Zeroconf(interfaces=[str(a) for a in self.addresses], ip_version=ip_version, use_asyncio=False)
        # The alias first: it is the name printed first. A machine whose own name is the
        # alias gets only the _https._tcp service (one service per name).
        wanted = {self.alias: HTTPS_TYPE}
        if LABEL_RE.match(self.host_label):
            wanted.setdefault(self.host_label, DEVICE_TYPE)
        else:
            log.info("mDNS: the host name %r is not a valid DNS name; announcing only %s%s",
                     self.host_label, self.alias, LOCAL)
        for label, name in self._free_names(list(wanted)).items():
            if name is None:
                log.warning("mDNS: %s%s and %s-2 … -%d are all taken on this network; not announcing it",
                            label, LOCAL, label, MAX_SUFFIX)
                continue
            if name != label:
                log.warning("mDNS: %s%s is already announced by another device on this network; "
                            "announcing %s%s instead", label, LOCAL, name, LOCAL)
            self._register(name, wanted[label])
            self.announced.names.append(name + LOCAL)
        self.announced.addresses = list(self.addresses)
        return self.announced

    def _info(self, name: str, kind: str) -> Any:
        from zeroconf import ServiceInfo

        if kind == HTTPS_TYPE:
            # RFC 6763 §7 / the DNS-SD txt registry: `path` is the page an HTTP(S) service
            # points at.
            return ServiceInfo(kind, f"{name}.{kind}", port=self.port, properties={"path": "/"},
                               server=f"{name}{LOCAL}.", parsed_addresses=[str(a) for a in self.addresses])
        return ServiceInfo(kind, f"{name}.{kind}", port=0, properties={"model": "meshcall"},
                           server=f"{name}{LOCAL}.", parsed_addresses=[str(a) for a in self.addresses])

    def _register(self, name: str, kind: str) -> None:
        info = self._info(name, kind)
        # The name was probed just before (_free_names), and the instance name follows
        # it, so zeroconf's own probe of the instance would only add a second.
        self._zc.register_service(info, cooperating_responders=True)
        self._infos.append(info)

    def _free_names(self, labels: list[str]) -> dict[str, str | None]:
        """For each label the first of label, label-2 … that no one else answers for.
        All labels are probed together, so the usual case costs one round (0.75 s)."""
        left = {label: candidates(label) for label in labels}
        chosen: dict[str, str | None] = {}
        while left:
            taken = self._taken([c[0] + LOCAL + "." for c in left.values()])
            for label in list(left):
                if left[label][0] + LOCAL + "." not in taken:
                    chosen[label] = left.pop(label)[0]
                elif len(left[label]) == 1:
                    chosen[label] = None
                    del left[label]
                else:
                    left[label].pop(0)
        return {label: chosen[label] for label in labels}

    def _taken(self, fqdns: list[str]) -> set[str]:
        """RFC 6762 §8.1 probing, simplified: ask for the names' addresses three times
        and see whether anyone answers with an address that is not ours. Same-address
        answers are no conflict (§8.2): e.g. this machine's own Avahi announcing the
        host name."""
        from zeroconf import DNSOutgoing, DNSQuestion, const

        ours = {str(a) for a in self.addresses}
        taken: set[str] = set()
        for _ in range(PROBES):
            out = DNSOutgoing(const._FLAGS_QR_QUERY)
            for fqdn in fqdns:
                # Multicast questions (QM): answers come back by multicast, so every socket
                # on 5353 sees them, also when two responders share one machine.
                out.add_question(DNSQuestion(fqdn, const._TYPE_A, const._CLASS_IN))
                out.add_question(DNSQuestion(fqdn, const._TYPE_AAAA, const._CLASS_IN))
            self._zc.send(out)
            time.sleep(PROBE_INTERVAL)
            for fqdn in fqdns:
                for type_ in (const._TYPE_A, const._TYPE_AAAA):
                    for record in self._zc.cache.get_all_by_details(fqdn, type_, const._CLASS_IN):
                        address = str(ipaddress.ip_address(record.address))
                        if address not in ours:
                            log.debug("mDNS: %s is announced with %s", fqdn, address)
                            taken.add(fqdn)
        return taken

    def update(self, addresses: Iterable[IPAddress]) -> bool:
        """Announce a new set of addresses under the same names (a new network, DHCP)."""
        fresh = sorted(set(addresses), key=address_order)
        if fresh == self.addresses or self._zc is None:
            return False
        self.addresses = fresh
        for info in self._infos:
            info.addresses = [a.packed for a in fresh]
            self._zc.update_service(info)
        self.announced.addresses = list(fresh)
        return True

    def stop(self) -> None:
        """Say goodbye (TTL 0, RFC 6762 §10.1) so devices forget the names at once."""
        if self._zc is None:
            return
        zc, self._zc = self._zc, None
        try:
            zc.unregister_all_services()
        finally:
            zc.close()


def addresses_to_announce(host_setting: str, ipv6: bool) -> list[IPAddress]:
    """The LAN addresses the appliance listens on; loopback is no one else's business."""
    if is_wildcard(host_setting):
        found = interface_addresses(include_loopback=False)
        if host_setting == EVERY_IPV4 or not ipv6:
            found = [a for a in found if a.version == 4]
        return found
    addr = ipaddress.ip_address(host_setting)
    return [] if addr.is_loopback or addr.is_unspecified else [addr]


class Mdns:
    """The announcer as the appliance's event loop sees it: every blocking step in a thread."""

    def __init__(self, host_label: str, alias: str) -> None:
        self.host_label = host_label
        self.alias = alias
        self._announcer: Announcer | None = None

    async def start(self, port: int, addresses: list[IPAddress]) -> list[str]:
        if not addresses:
            log.info("mDNS: no LAN address to announce %s%s on", self.alias, LOCAL)
            return []
        from zeroconf import Error as ZeroconfError

        announcer = Announcer(self.host_label, self.alias, port, addresses)
        self._announcer = announcer
        try:
            announced = await asyncio.to_thread(announcer.start)
        except (OSError, ZeroconfError) as exc:
            # No multicast on this network, port 5353 refused, or the library's loop too
            # slow to register in time: join by address still works.
            log.warning("mDNS: cannot announce on this network (%s); join by address",
                        getattr(exc, "strerror", None) or exc or type(exc).__name__)
            await self.stop()
            return []
        log.info("mDNS: announcing %s on %s", ", ".join(announced.names),
                 ", ".join(str(a) for a in announced.addresses))
        return announced.names

    async def update(self, addresses: list[IPAddress]) -> None:
        if self._announcer is not None and addresses:
            if await asyncio.to_thread(self._announcer.update, addresses):
                log.info("mDNS: now announcing %s", ", ".join(str(a) for a in addresses))

    async def stop(self) -> None:
        from zeroconf import Error as ZeroconfError

        if self._announcer is not None:
            announcer, self._announcer = self._announcer, None
            try:
                await asyncio.to_thread(announcer.stop)
            except (OSError, ZeroconfError) as exc:
                # Goodbyes are a courtesy: devices forget the names when their TTL runs out.
                log.info("mDNS: goodbyes not sent (%s)", exc or type(exc).__name__)
