"""Start and stop the appliance: HTTPS + signaling, the onboarding port, the TURN relay."""

from __future__ import annotations

import asyncio
import errno
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
from tornado import httpserver, ioloop, netutil

from . import __version__, netinfo
from .collector import Collector
from .certs import (CertificateError, ServerCertificate, ensure_certificates, leaf_covers, load_certificate,
                    user_certificate, write_private)
from .onboarding import Onboarding, make_onboarding_app
from .paths import DataDirError, asset_dir, default_data_dir, prepare_data_dir
from .rooms import Rooms
from .settings import Config
from .signaling import Hub
from .web import AppContext, make_app

log = logging.getLogger(__name__)

TURN_SECRET_FILE = "turn-secret"
SHUTDOWN_SOCKET_WAIT = 1.0
ADDRESS_CHECK_SECONDS = 30


class StartupError(Exception):
    """Something the admin must fix before meshcall can start; one line for the user."""


def _bind(port: int, host: str, what: str, flag: str) -> list[socket.socket]:
    try:
        return netutil.bind_sockets(port, address=None if host in ("", "*") else host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"{what} port {port} on {host or '*'} is already in use "
                               f"(another meshcall? choose another with {flag})") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise StartupError(f"{what} port {port}: permission denied (ports below 1024 need privileges)") from None
        raise StartupError(f"{what} port {port} on {host}: {exc.strerror or exc}") from None


def _turn_secret(config: Config, data_dir: Path) -> bytes:
    if config.turn_secret:
        return config.turn_secret.encode()
    path = data_dir / TURN_SECRET_FILE
    if path.exists():
        return path.read_bytes().strip()
    value = secrets.token_urlsafe(32).encode()
    write_private(path, value)
    return value


class Appliance:
    """Everything meshcall runs, in one process and one event loop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir) if config.data_dir else default_data_dir()
        self.rooms = Rooms(config.max_peers, config.resume_grace)
        # Pages get fresh TURN credentials at half their lifetime.
        self.hub = Hub(self.rooms, self._ice_for, ice_refresh=config.turn_credential_ttl / 2)
        self.cert: ServerCertificate | None = None
        self.turn: Any = None
        self.turn_secret = b""
        self.port = config.port
        self.http_port = config.http_port
        self._servers: list[httpserver.HTTPServer] = []
        self._ssl_ctx: ssl.SSLContext | None = None
        self._watcher: ioloop.PeriodicCallback | None = None
        self._leaf: x509.Certificate | None = None

    # -- ICE servers for one peer -----------------------------------------------------

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
        host = self.config.host
        if host in ("0.0.0.0", "", "*", "::"):
            addrs = netinfo.interface_addresses(include_loopback=True)
            if host == "0.0.0.0":
                addrs = [a for a in addrs if a.version == 4]
            return [str(a) for a in addrs]
        return [host]

    async def start(self) -> None:
        config = self.config
        try:
            prepare_data_dir(self.data_dir)
        except DataDirError as exc:
            raise StartupError(str(exc)) from None
        host = netinfo.hostname()
        try:
            if config.cert is not None and config.key is not None:
                self.cert = user_certificate(Path(config.cert), Path(config.key))
            elif not config.proxy:
                self.cert = ensure_certificates(self.data_dir, host, netinfo.interface_addresses())
        except CertificateError as exc:
            raise StartupError(str(exc)) from None
        except OSError as exc:
            raise StartupError(f"certificates in {self.data_dir}: {exc.strerror or exc}") from None

        assets = asset_dir()
        ca_pem = self.cert.ca_file.read_bytes() if self.cert and self.cert.ca_file else None
        ctx = AppContext(self.hub, assets, ca_pem)
        app = make_app(ctx)  # behind a proxy, HTTPServer(xheaders=...) reads X-Forwarded-*
        ssl_ctx: ssl.SSLContext | None = None
        if self.cert is not None and not config.proxy:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ssl_ctx.load_cert_chain(self.cert.cert_file, self.cert.key_file)
            self._ssl_ctx = ssl_ctx
            self._leaf = load_certificate(self.cert.cert_file)
        socks = _bind(config.port, config.host, "HTTPS" if ssl_ctx else "HTTP", "--port")
        self.port = socks[0].getsockname()[1]
        server = httpserver.HTTPServer(app, ssl_options=ssl_ctx, xheaders=config.proxy)
        server.add_sockets(socks)
        self._servers.append(server)

        if config.http_port and ssl_ctx is not None:
            info = Onboarding(self.port, ca_pem, self.cert.ca_fingerprint if self.cert else None,
                              self.join_urls, lambda: self.cert.fingerprint if self.cert else "")
            socks = _bind(config.http_port, config.host, "HTTP", "--http-port")
            self.http_port = socks[0].getsockname()[1]
            onboarding = httpserver.HTTPServer(make_onboarding_app(info, str(assets)))
            onboarding.add_sockets(socks)
            self._servers.append(onboarding)

        if not config.no_turn:
            await self._start_turn()
        self.hub.start()
        if self._ssl_ctx is not None and self.cert is not None and self.cert.ca_file is not None:
            self._watcher = ioloop.PeriodicCallback(self._check_addresses, ADDRESS_CHECK_SECONDS * 1000)
            self._watcher.start()

    def _check_addresses(self) -> None:
        self.refresh_certificate()

    def refresh_certificate(self) -> bool:
        """Reissue the leaf when an address appears (DHCP, a new network) while running;
        new TLS handshakes use it at once, and trusted devices stay trusted (same CA)."""
        if self._ssl_ctx is None or self.cert is None or self.cert.ca_file is None:
            return False
        host, addresses = netinfo.hostname(), netinfo.interface_addresses()
        if self._leaf is not None and leaf_covers(self._leaf, host, addresses):
            return False  # the usual case: checked in memory, no file read
        try:
            fresh = ensure_certificates(self.data_dir, host, addresses)
        except (OSError, ValueError) as exc:
            log.warning("certificates: cannot check for address changes: %s", exc)
            return False
        if fresh.fingerprint == self.cert.fingerprint:
            return False
        self._ssl_ctx.load_cert_chain(fresh.cert_file, fresh.key_file)
        self.cert = fresh
        self._leaf = load_certificate(fresh.cert_file)
        log.info("certificate: reissued for new addresses; SHA-256 %s", fresh.fingerprint)
        return True

    async def _start_turn(self) -> None:
        from .turn.selfcheck import self_check
        from .turn.server import TurnConfig, TurnServer

        config = self.config
        self.turn_secret = _turn_secret(config, self.data_dir)
        forbidden = frozenset(p for p in (self.port, self.http_port) if p)  # TURN adds its own
        addrs = self._listen_addresses()
        turn = TurnServer(TurnConfig(
            listen=addrs, port=config.turn_port, secret=self.turn_secret,
            relay_min_port=config.relay_min_port, relay_max_port=config.relay_max_port,
            allow_loopback_peers=config.turn_allow_loopback, forbidden_ports=forbidden,
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

    def join_hosts(self) -> list[str]:
        """The hosts people can use to reach this appliance, as they go in a URL."""
        host = self.config.host
        if host in ("0.0.0.0", "", "*", "::"):
            addrs = netinfo.lan_addresses()
            if host == "0.0.0.0":
                addrs = [a for a in addrs if a.version == 4] or addrs
            return [netinfo.url_host(a) for a in addrs] + [f"{netinfo.hostname()}.local"]
        return [netinfo.url_host(host)]

    def join_urls(self, hosts: list[str] | None = None) -> list[str]:
        scheme = "https" if self.cert is not None and not self.config.proxy else "http"
        port = "" if (scheme, self.port) in (("https", 443), ("http", 80)) else f":{self.port}"
        return [f"{scheme}://{h}{port}/" for h in (hosts or self.join_hosts())]

    def announce(self) -> None:
        log.info("meshcall %s: ready", __version__)
        hosts = self.join_hosts()
        urls = self.join_urls(hosts)
        for url in urls:
            log.info("join: %s", url)
        if self.cert is not None:
            log.info("certificate: SHA-256 %s", self.cert.fingerprint)
            if self.cert.ca_fingerprint:
                log.info("certificate authority: SHA-256 %s", self.cert.ca_fingerprint)
        if self.config.http_port and self.cert is not None and not self.config.proxy:
            log.info("first time on a device? open http://%s:%d/ to trust this appliance", hosts[0], self.http_port)
        log.info("data dir: %s", self.data_dir)
        if sys.stdout.isatty():
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
        for server in self._servers:
            server.stop()
        if self.turn is not None:
            await self.turn.stop()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.close_all_connections(), 0.5)
            except asyncio.TimeoutError:
                pass


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
