"""The HTTPS application: pages, static assets, health, the CA download and signaling."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import segno
from tornado import web

from . import __version__
from .protocol import ROOM_RE
from .signaling import Hub, SignalingHandler

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob: mediastream:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
CA_MIME = "application/x-x509-ca-cert"


@dataclass
class AppContext:
    """What the handlers need, injected by make_app."""

    hub: Hub
    assets: Path
    ca_pem: bytes | None = None  # read once: the CA never changes while running


def send_ca(handler: web.RequestHandler, pem: bytes | None) -> None:
    """The CA certificate as a download devices offer to install (404 without one)."""
    if pem is None:
        raise web.HTTPError(404)
    handler.set_header("Content-Type", CA_MIME)
    handler.set_header("Content-Disposition", 'attachment; filename="meshcall-ca.crt"')
    handler.finish(pem)


class SecureHandler(web.RequestHandler):
    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}\n")


class NotFoundHandler(SecureHandler):
    def prepare(self) -> None:
        raise web.HTTPError(404)


class StaticHandler(web.StaticFileHandler):
    def set_default_headers(self) -> None:
        SecureHandler.set_default_headers(self)  # type: ignore[arg-type]

    def set_extra_headers(self, path: str) -> None:
        # Served from one box on a LAN: revalidate every time so an upgrade shows at once.
        self.set_header("Cache-Control", "no-cache")


class PageHandler(SecureHandler):
    def initialize(self, ctx: AppContext, page: str) -> None:
        self.ctx, self.page = ctx, page

    def get(self, room: str | None = None) -> None:
        if room is not None and not ROOM_RE.match(room):
            raise web.HTTPError(404)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish((self.ctx.assets / self.page).read_bytes())

    head = get


class HealthHandler(SecureHandler):
    def initialize(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def get(self) -> None:
        rooms = self.ctx.hub.rooms
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"status": "ok", "version": __version__,
                                "rooms": rooms.room_count, "peers": rooms.peer_count}))


class CaHandler(SecureHandler):
    def initialize(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def get(self) -> None:
        send_ca(self, self.ctx.ca_pem)


class QrHandler(SecureHandler):
    """A QR code of this appliance's own link (the page the phone should open)."""

    def initialize(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def get(self, room: str | None = None) -> None:
        if room is not None and not ROOM_RE.match(room):
            raise web.HTTPError(404)
        url = f"{self.request.protocol}://{self.request.host}/" + (f"r/{room}" if room else "")
        self.set_header("Content-Type", "image/svg+xml")
        self.set_header("Cache-Control", "no-cache")
        # A standalone SVG document (with its xmlns, unlike svg_inline) so that <img src> renders it.
        out = io.BytesIO()
        segno.make(url, error="m").save(out, kind="svg", xmldecl=False, nl=False, scale=6, border=2,
                                        dark="#111", light="#fff")
        self.finish(out.getvalue())


def make_app(ctx: AppContext, **settings: Any) -> web.Application:
    routes: list[Any] = [
        (r"/", PageHandler, {"ctx": ctx, "page": "index.html"}),
        (r"/r/([^/]+)", PageHandler, {"ctx": ctx, "page": "room.html"}),
        (r"/ws", SignalingHandler, {"hub": ctx.hub}),
        (r"/healthz", HealthHandler, {"ctx": ctx}),
        (r"/meshcall-ca\.crt", CaHandler, {"ctx": ctx}),
        (r"/qr\.svg", QrHandler, {"ctx": ctx}),
        (r"/qr/([^/]+)\.svg", QrHandler, {"ctx": ctx}),
        (r"/static/(.*)", StaticHandler, {"path": str(ctx.assets)}),
    ]
    defaults: dict[str, Any] = {
        "default_handler_class": NotFoundHandler,
        # No per-socket ping timers: the hub pings only sockets that have gone quiet.
        "websocket_ping_interval": 0,
        "websocket_max_message_size": 256 * 1024,  # parse() refuses > 64 KiB with a clear code
        "compress_response": True,
    }
    defaults.update(settings)
    return web.Application(routes, **defaults)
