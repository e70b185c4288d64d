"""Start and stop the appliance: HTTPS + signaling, the onboarding port, the TURN relay."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import signal
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from tornado import httpserver, ioloop

from . import __version__, listen, netinfo, reach
from .access import AccessGate
from .collector import Collector
from .doors import Doors, GuardedHTTPServer, raise_open_files_limit
from .logthrottle import LogThrottle
from .certs import (CertificateError, ServerCertificate, ensure_certificates, leaf_covers, load_certificate,
                    user_certificate, write_private)
from .devices import DeviceInfo, https_routes
from .listen import BindError, Listener
from .mdns import Mdns, addresses_to_announce
from .onboarding import Onboarding, make_onboarding_app
from .paths import DataDirError, asset_dir, default_data_dir, prepare_data_dir
from .rooms import Rooms
from .settings import Config
from .signaling import Hub
from .web import AppContext, make_app

log = logging.getLogger(__name__)

TURN_SECRET_FILE = "turn-secret"
# Signs the access-code cookies; kept so that a restart does not ask every browser again.
ACCESS_SECRET_FILE = "access-secret"
SHUTDOWN_SOCKET_WAIT = 1.0
ADDRESS_CHECK_SECONDS = 30
# No page sends a request body larger than this (none sends one at all today); Tornado's
# default of 100 MB would let a few clients fill the memory.
MAX_BODY_BYTES = 64 * 1024
# Loggers whose lines a client can trigger again and again: at most LOG_BURST lines per
# message template every LOG_INTERVAL seconds, then one summary.
THROTTLED_LOGGERS = ("meshcall.web", "meshcall.doors", "tornado.application", "tornado.general",
                     "tornado.access", "asyncio")
LOG_BURST = 5
LOG_INTERVAL = 10.0
HOUSEKEEPING_MS = 10_000


class StartupError(Exception):
    """Something the admin must fix before meshcall can start; one line for the user."""


def _bind(listener: Listener, port: int, what: str, flag: str) -> list[socket.socket]:
    try:
        return listener.bind(port, what, flag)
    except BindError as exc:
        raise StartupError(str(exc)) from None


def _stored_secret(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes().strip()
    value = secrets.token_urlsafe(32).encode()
    write_private(path, value)
    return value


def _turn_secret(config: Config, data_dir: Path) -> bytes:
    if config.turn_secret:
        return config.turn_secret.encode()
    return _stored_secret(data_dir / TURN_SECRET_FILE)


class Appliance:
    """Everything meshcall runs, in one process and one event loop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir) if config.data_dir else default_data_dir()
        self.rooms = Rooms(config.max_peers, config.resume_grace)
        # Pages get fresh TURN credentials at half their lifetime.
        self.hub = Hub(self.rooms, self._ice_for, ice_refresh=config.turn_credential_ttl / 2,
                       on_gone=self._forget_relays)
        self.cert: ServerCertificate | None = None
        self.turn: Any = None
        self.turn_secret = b""
        self.port = config.port
        self.http_port = config.http_port
        self._servers: list[httpserver.HTTPServer] = []
        self._ssl_ctx: ssl.SSLContext | None = None
        self._watcher: ioloop.PeriodicCallback | None = None
        self._leaf: x509.Certificate | None = None
        # Behind a proxy every connection comes from the proxy: the cap is its job there.
        self.doors = Doors(0 if config.proxy else config.max_connections_per_address)
        self.log_throttle = LogThrottle(LOG_BURST, LOG_INTERVAL)
        self._housekeeping: ioloop.PeriodicCallback | None = None
        self._listener = Listener(config.host)
        self.mdns: Mdns | None = None if config.no_mdns else Mdns(netinfo.hostname(), netinfo.alias_label(config.mdns_name))
        # The .local names in the certificate: the alias asked for until mDNS has said
        # which one it could take.
        self.names: list[str] = [] if self.mdns is None else [self.mdns.alias + ".local"]
        self._mdns_update: asyncio.Future[None] | None = None

    # -- ICE servers for one peer -----------------------------------------------------

    def _forget_relays(self, peer_id: str) -> None:
        """Someone left for good: their relays go at once, not when they expire, so the
        TURN quota follows the person."""
        if self.turn is not None:
            self.turn.forget_user(peer_id)  # logs what it released

    def _ice_for(self, peer_id: str, host: str) -> dict[str, Any]:
        policy = "relay" if self.config.relay_only else "all"
        if self.turn is None:
            return {"iceServers": [], "iceTransportPolicy": policy}
        from .turn.credentials import rest_credentials

        username, password = rest_credentials(self.turn_secret, peer_id, self.config.turn_credential_ttl)
        h, port = netinfo.url_host(host), self.turn.port
        return {
            "iceServers": [
                {"urls": [f"stun:{h}:{port}"]},
                {"urls": [f"turn:{h}:{port}?transport=udp", f"turn:{h}:{port}?transport=tcp"],
                 "username": username, "credential": password},
            ],
            "iceTransportPolicy": policy,
        }

    # -- start / stop ------------------------------------------------------------------

    def _listen_addresses(self) -> list[str]:
        return self._listener.addresses()

    def _http_server(self, app: Any, ssl_ctx: ssl.SSLContext | None = None,
                     xheaders: bool = False) -> GuardedHTTPServer:
        config = self.config
        # idle_connection_timeout is Tornado's deadline for a complete request header,
        # counted from the moment it starts waiting (accept, or the end of the previous
        # request): it bounds the idle keep-alive time and a header sent a byte at a time.
        return GuardedHTTPServer(app, ssl_options=ssl_ctx, xheaders=xheaders, doors=self.doors,
                                 tls_handshake_timeout=config.tls_handshake_timeout,
                                 idle_connection_timeout=config.header_timeout,
                                 body_timeout=config.body_timeout, max_body_size=MAX_BODY_BYTES)

    def _open_files(self) -> None:
        limits = raise_open_files_limit()
        if limits is None:
            return
        before, after = limits
        if after > before:
            log.info("open files: limit raised from %d to %d", before, after)
        else:
            log.info("open files: limit %d (cannot raise it further)", after)

    async def start(self) -> None:
        config = self.config
        self._open_files()
        self.log_throttle.attach(*(logging.getLogger(name) for name in THROTTLED_LOGGERS))
        try:
            prepare_data_dir(self.data_dir)
        except DataDirError as exc:
            raise StartupError(str(exc)) from None
        host = netinfo.hostname()
        try:
            if config.cert is not None and config.key is not None:
                self.cert = user_certificate(Path(config.cert), Path(config.key))
            elif not config.proxy:
                self.cert = ensure_certificates(self.data_dir, host, netinfo.interface_addresses(), self.names)
        except CertificateError as exc:
            raise StartupError(str(exc)) from None
        except OSError as exc:
            raise StartupError(f"certificates in {self.data_dir}: {exc.strerror or exc}") from None

        assets = asset_dir()
        ca_pem = self.cert.ca_file.read_bytes() if self.cert and self.cert.ca_file else None
        access = (AccessGate(config.access_code, _stored_secret(self.data_dir / ACCESS_SECRET_FILE))
                  if config.access_code else None)
        ctx = AppContext(self.hub, assets, ca_pem, access=access, extra_routes=https_routes(DeviceInfo(
            assets, ca_pem, self.join_urls, self.onboarding_urls, self._ice_for,
            config.wifi_ssid, config.wifi_password)))
        app = make_app(ctx)  # behind a proxy, HTTPServer(xheaders=...) reads X-Forwarded-*
        ssl_ctx: ssl.SSLContext | None = None
        if self.cert is not None and not config.proxy:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ssl_ctx.load_cert_chain(self.cert.cert_file, self.cert.key_file)
            self._ssl_ctx = ssl_ctx
            self._leaf = load_certificate(self.cert.cert_file)
        socks = _bind(self._listener, config.port, "HTTPS" if ssl_ctx else "HTTP", "--port")
        self.port = socks[0].getsockname()[1]
        server = self._http_server(app, ssl_ctx, xheaders=config.proxy)
        server.add_sockets(socks)
        self._servers.append(server)

        if config.http_port and ssl_ctx is not None:
            info = Onboarding(self.port, ca_pem, self.cert.ca_fingerprint if self.cert else None,
                              self.join_urls, lambda: self.cert.fingerprint if self.cert else "")
            socks = _bind(self._listener, config.http_port, "HTTP", "--http-port")
            self.http_port = socks[0].getsockname()[1]
            onboarding = self._http_server(make_onboarding_app(info, str(assets)))
            onboarding.add_sockets(socks)
            self._servers.append(onboarding)

        mdns = asyncio.ensure_future(self._start_mdns())  # probing takes a second: alongside TURN
        try:
            if not config.no_turn:
                await self._start_turn()
        except BaseException:
            await asyncio.gather(mdns, return_exceptions=True)  # the first failure is the one to report
            if self.mdns is not None:
                await self.mdns.stop()  # goodbyes, and no announcement left behind a failed start
            raise
        await mdns
        self.hub.start()
        self._housekeeping = ioloop.PeriodicCallback(self._housekeep, HOUSEKEEPING_MS)
        self._housekeeping.start()
        if self._ssl_ctx is not None and self.cert is not None and self.cert.ca_file is not None:
            self._watcher = ioloop.PeriodicCallback(self._check_addresses, ADDRESS_CHECK_SECONDS * 1000)
            self._watcher.start()

    def _housekeep(self) -> None:
        self.doors.sweep()
        self.log_throttle.flush()  # summaries of floods that have stopped

    async def _start_mdns(self) -> None:
        if self.mdns is None or self.config.proxy:
            self.names = []  # behind a proxy, names are the proxy's business
            return
        addresses = addresses_to_announce(self.config.host, ipv6=not self._listener.ipv6_failed)
        self.names = await self.mdns.start(self.port, addresses)
        self.refresh_certificate()  # another name than the one asked for (a conflict)

    def _check_addresses(self) -> None:
        self.refresh_certificate()
        if self.mdns is not None:
            addresses = addresses_to_announce(self.config.host, ipv6=not self._listener.ipv6_failed)
            self._mdns_update = asyncio.ensure_future(self.mdns.update(addresses))  # kept: a task needs a reference

    def refresh_certificate(self) -> bool:
        """Reissue the leaf when an address appears (DHCP, a new network) while running;
        new TLS handshakes use it at once, and trusted devices stay trusted (same CA)."""
        if self._ssl_ctx is None or self.cert is None or self.cert.ca_file is None:
            return False
        host, addresses = netinfo.hostname(), netinfo.interface_addresses()
        if self._leaf is not None and leaf_covers(self._leaf, host, addresses, self.names):
            return False  # the usual case: checked in memory, no file read
        try:
            fresh = ensure_certificates(self.data_dir, host, addresses, self.names)
        except (OSError, ValueError) as exc:
            log.warning("certificates: cannot check for address changes: %s", exc)
            return False
        if fresh.fingerprint == self.cert.fingerprint:
            return False
        self._ssl_ctx.load_cert_chain(fresh.cert_file, fresh.key_file)
        self.cert = fresh
        self._leaf = load_certificate(fresh.cert_file)
        log.info("certificate: reissued for new names or addresses; SHA-256 %s", fresh.fingerprint)
        return True

    async def _start_turn(self) -> None:
        from .turn.config import TurnConfig
        from .turn.selfcheck import self_check
        from .turn.server import TurnServer

        config = self.config
        self.turn_secret = _turn_secret(config, self.data_dir)
        forbidden = frozenset(p for p in (self.port, self.http_port) if p)  # TURN adds its own
        addrs = self._listen_addresses()
        turn = TurnServer(TurnConfig(
            listen=addrs, port=config.turn_port, secret=self.turn_secret,
            relay_min_port=config.relay_min_port, relay_max_port=config.relay_max_port,
            allow_loopback_peers=config.turn_allow_loopback, forbidden_ports=forbidden,
            max_allocations=config.turn_max_allocations,
            max_allocations_per_user=config.turn_max_allocations_per_user,
            max_allocations_per_ip=config.turn_max_allocations_per_ip,
        ))
        try:
            await turn.start()
        except OSError as exc:
            raise StartupError(f"TURN port {config.turn_port}: {exc.strerror or exc} "
                               "(choose another with --turn-port, or --no-turn)") from None
        self.turn = turn
        target = next((a for a in addrs if not ipaddress.ip_address(a).is_loopback), addrs[0])
        ok, message = await self_check(target, turn.port, self.turn_secret)
        (log.info if ok else log.warning)("TURN: self-check: %s", message)

    def _join(self) -> tuple[list[str], list[reach.LeftOut]]:
        leaf = None if self.config.proxy else self._leaf
        own_ca = self.cert is not None and self.cert.ca_file is not None
        names = self.names
        if self.mdns is None and listen.is_wildcard(self.config.host):
            # Not announced by us; maybe by the system's own responder (Avahi, Bonjour).
            names = [f"{netinfo.hostname()}.local"]
        return reach.join_hosts(self.config.host, names, leaf, own_ca)

    def join_hosts(self) -> list[str]:
        """The hosts people can use to reach this appliance, as they go in a URL: only
        those the certificate covers (see reach.py)."""
        return self._join()[0]

    def join_urls(self, hosts: list[str] | None = None) -> list[str]:
        scheme = "https" if self.cert is not None and not self.config.proxy else "http"
        port = "" if (scheme, self.port) in (("https", 443), ("http", 80)) else f":{self.port}"
        return [f"{scheme}://{h}{port}/" for h in (hosts or self.join_hosts())]

    def onboarding_urls(self) -> list[str]:
        if not self.config.http_port or self.cert is None or self.config.proxy:
            return []
        return [f"http://{h}:{self.http_port}/" for h in self.join_hosts()]

    def announce(self) -> None:
        log.info("meshcall %s: ready", __version__)
        hosts, left_out = self._join()
        urls = self.join_urls(hosts)
        reach.log_left_out(left_out, next((u for h, u in zip(hosts, urls) if h.endswith(".local")), None))
        if not urls:
            log.warning("join: the certificate covers no address or name of this machine")
        for url in urls:
            log.info("join: %s", url)
        if self.cert is not None:
            log.info("certificate: SHA-256 %s", self.cert.fingerprint)
            if self.cert.ca_fingerprint:
                log.info("certificate authority: SHA-256 %s", self.cert.ca_fingerprint)
        if self.config.http_port and self.cert is not None and not self.config.proxy and hosts:
            log.info("first time on a device? open http://%s:%d/ to trust this appliance", hosts[0], self.http_port)
        if urls:
            log.info("test a device: %scheck; print a room's card: %scard/<room>", urls[0], urls[0])
        if self.config.access_code:
            log.info("access code: required once in every browser (the code itself is never logged)")
        log.info("data dir: %s", self.data_dir)
        if sys.stdout.isatty() and urls:
            import segno

            segno.make(urls[0], error="m").terminal(compact=True)

    async def stop(self) -> None:
        count = self.hub.shutdown()
        if count:
            log.info("shutdown: told %d page(s) the server is going away", count)
        deadline = asyncio.get_running_loop().time() + SHUTDOWN_SOCKET_WAIT
        while self.hub.sockets and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        self.hub.stop()
        if self._watcher is not None:
            self._watcher.stop()
        if self._housekeeping is not None:
            self._housekeeping.stop()
        for server in self._servers:
            server.stop()
        if self.turn is not None:
            await self.turn.stop()
        if self.mdns is not None:
            await self.mdns.stop()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.close_all_connections(), 0.5)
            except asyncio.TimeoutError:
                pass
        self.log_throttle.detach()


async def run(config: Config) -> int:
    # Signal handlers first: a SIGTERM that arrives while starting (the server already
    # answers while start-up finishes) then still ends in a clean stop with exit code 0.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, AttributeError, ValueError):
            # Windows: no loop signal handlers; signal.signal still sees Ctrl+C.
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    appliance = Appliance(config)
    await appliance.start()
    appliance.announce()
    collector = Collector()
    collector.start()
    await stop.wait()
    log.info("shutdown: stopping")
    collector.stop()
    await appliance.stop()
    log.info("shutdown: done")
    return 0
