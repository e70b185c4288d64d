"""The HTTPS application: pages, static assets, health, the CA download and signaling."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import segno
from tornado import httputil, web

from . import __version__
from .access import COOKIE_NAME, AccessGate, Verdict
from .bundle import Asset, Bundle
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
# Longest static path served (the longest asset name is far shorter); a longer one is a
# 400 without touching the file system.
MAX_STATIC_PATH = 200
# A static path is plain names joined by "/": no control characters, no backslash, no
# empty, "." or ".." segment. Anything else is malformed rather than merely missing.
_STATIC_SEGMENT = re.compile(r"[^\x00-\x1f\x7f\\/]+")
LOGGED_URI_CHARS = 120

log = logging.getLogger(__name__)


class SecurityHeaders(web.OutputTransform):
    """Adds SECURITY_HEADERS to every response an application sends: pages, static
    files, redirects, errors, and the WebSocket handler's own 400/403 answers. One
    place, so that no handler (ours or Tornado's) can forget them; a header a handler
    sets itself is left as it is."""

    def transform_first_chunk(self, status_code: int, headers: httputil.HTTPHeaders, chunk: bytes,
                              finishing: bool) -> tuple[int, httputil.HTTPHeaders, bytes]:
        for name, value in SECURITY_HEADERS.items():
            if name not in headers:
                headers[name] = value
        return status_code, headers, chunk


def _printable(text: str) -> str:
    """A client's text made safe for one log line: no control characters, bounded."""
    if len(text) > LOGGED_URI_CHARS:
        text = text[:LOGGED_URI_CHARS] + "…"
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def log_request(handler: web.RequestHandler) -> None:
    """One line per request a client got wrong, at INFO; a 5xx (a fault of ours) at ERROR.

    Replaces Tornado's access log, which writes every 4xx at WARNING with the full URI
    (kilobytes for an overlong path). Successful requests are only of interest when
    debugging. The appliance rate-limits this logger (logthrottle)."""
    status = handler.get_status()
    if status < 400:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("http: %d %s %s", status, handler.request.method, _printable(handler.request.uri or ""))
        return
    request = handler.request
    (log.error if status >= 500 else log.info)("http: %d %s %s from %s", status, _printable(request.method or ""),
                                               _printable(request.uri or ""), request.remote_ip)


# What a browser without the access cookie may fetch: the page asking for the code and
# what that page loads, the health check (monitoring; counts only, no names) and the CA
# (public, and on the onboarding port anyway). Everything else, routes added later
# included, is behind the code.
ACCESS_OPEN_PATHS = frozenset({"/access", "/healthz", "/meshcall-ca.crt", "/static/app.css",
                               "/static/js/access.js"})
ACCESS_PAGE = "access.html"


class GatedApplication(web.Application):
    """An application whose every route needs the access cookie (see access.py): one
    place, so no handler can forget it. Without the cookie a page request gets the page
    asking for the code (at the URL asked for, so the browser comes back to it) and any
    other request a plain 403 — the WebSocket upgrade included, before any frame."""

    def __init__(self, routes: list[Any], gate: AccessGate, assets: Path, **settings: Any) -> None:
        super().__init__(routes, **settings)
        self.gate = gate
        self.access_page = (assets / ACCESS_PAGE).read_bytes()  # read once: assets do not change

    def admitted(self, request: httputil.HTTPServerRequest) -> bool:
        # Tornado's own cookie parser: a malformed header yields no cookie, never an error.
        morsel = request.cookies.get(COOKIE_NAME)
        return self.gate.admits(morsel.value if morsel else None, time.time())

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> web._HandlerDelegate:
        if request.path in ACCESS_OPEN_PATHS or self.admitted(request):
            return super().find_handler(request, **kwargs)
        return self.get_handler_delegate(request, AccessRequiredHandler, {"page": self.access_page})


def application(routes: list[Any], gate: AccessGate | None = None, assets: Path | None = None,
                **settings: Any) -> web.Application:
    """A Tornado application with what every port of the appliance needs: the security
    headers on every response and the short, rate-limited request log; with a gate,
    every route but ACCESS_OPEN_PATHS needs the access cookie."""
    settings = {"log_function": log_request, **settings}
    if gate is not None:
        assert assets is not None
        app: web.Application = GatedApplication(routes, gate, assets, **settings)
    else:
        app = web.Application(routes, **settings)
    app.add_transform(SecurityHeaders)
    return app


@dataclass
class AppContext:
    """What the handlers need, injected by make_app."""

    hub: Hub
    assets: Path
    ca_pem: bytes | None = None  # read once: the CA never changes while running
    access: AccessGate | None = None  # --access-code: every route but a few needs its cookie
    bundle: Bundle | None = None  # read from `assets` by make_app when not given
    extra_routes: list[Any] = field(default_factory=list)  # devices.py: profile, room card, self-test

    @property
    def files(self) -> Bundle:
        if self.bundle is None:
            self.bundle = Bundle(self.assets)
        return self.bundle


def send_ca(handler: web.RequestHandler, pem: bytes | None) -> None:
    """The CA certificate as a download devices offer to install (404 without one)."""
    if pem is None:
        raise web.HTTPError(404)
    handler.set_header("Content-Type", CA_MIME)
    handler.set_header("Content-Disposition", 'attachment; filename="meshcall-ca.crt"')
    handler.finish(pem)


class SecureHandler(web.RequestHandler):
    """Errors as one plain-text line (the security headers come from SecurityHeaders)."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}\n")


class NotFoundHandler(SecureHandler):
    def prepare(self) -> None:
        raise web.HTTPError(404)


def check_static_path(path: str) -> None:
    """A 400 for a path no asset can have, before it reaches the file system: a NUL byte
    there raised ValueError deep in os.stat (a 500 and a traceback per request)."""
    if len(path) > MAX_STATIC_PATH or not all(
            _STATIC_SEGMENT.fullmatch(part) and part not in (".", "..") for part in path.split("/")):
        raise web.HTTPError(400)


class CheckedStaticFileHandler(web.StaticFileHandler):
    """Static files whose path is checked first (see check_static_path)."""

    async def get(self, path: str, include_body: bool = True) -> None:
        check_static_path(path)
        await super().get(path, include_body)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        SecureHandler.write_error(self, status_code, **kwargs)  # type: ignore[arg-type]


def send_asset(handler: web.RequestHandler, asset: Asset, cache_control: str) -> None:
    """One file of the bundle: its strong ETag (304 when the client has it), and the
    gzip made at start when the client takes it."""
    handler.set_header("Content-Type", asset.content_type)
    handler.set_header("Cache-Control", cache_control)
    handler.set_header("ETag", asset.etag)
    handler.set_header("Vary", "Accept-Encoding")
    if asset.etag in handler.request.headers.get("If-None-Match", ""):
        handler.set_status(304)
        handler.finish()
        return
    body = asset.body
    if asset.gzipped is not None and "gzip" in handler.request.headers.get("Accept-Encoding", ""):
        handler.set_header("Content-Encoding", "gzip")  # Tornado's own gzip then leaves it alone
        body = asset.gzipped
    handler.finish(body if handler.request.method != "HEAD" else None)


# The versioned tree changes its URL when a file changes: cache it for good.
IMMUTABLE = "public, max-age=31536000, immutable"
# Pages (and unversioned asset URLs, for old links) are revalidated every time, so an
# upgrade shows at once; a 304 costs the client a round trip and no bytes.
REVALIDATE = "no-cache"


class StaticHandler(SecureHandler):
    """The front end, from the bundle: `/static/<version>/…` immutable, `/static/…` not."""

    def initialize(self, ctx: AppContext) -> None:
        self.bundle = ctx.files

    def get(self, path: str) -> None:
        check_static_path(path)
        cache = REVALIDATE
        version, _, rest = path.partition("/")
        if version == self.bundle.version and rest:
            path, cache = rest, IMMUTABLE
        asset = self.bundle.get(path)
        if asset is None:
            raise web.HTTPError(404)
        send_asset(self, asset, cache)

    head = get


class PageHandler(SecureHandler):
    def initialize(self, ctx: AppContext, page: str) -> None:
        self.ctx, self.page = ctx, page

    def get(self, room: str | None = None) -> None:
        if room is not None and not ROOM_RE.fullmatch(room):
            raise web.HTTPError(404)
        send_asset(self, self.ctx.files.page(self.page), REVALIDATE)

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
        if room is not None and not ROOM_RE.fullmatch(room):
            raise web.HTTPError(404)
        url = f"{self.request.protocol}://{self.request.host}/" + (f"r/{room}" if room else "")
        # A room display's code: whoever joins through it is in the room with the display,
        # so the page starts with microphone and speaker off (no echo, no howl).
        if room is not None and self.get_query_argument("inroom", None) == "1":
            url += "?inroom=1"
        self.set_header("Content-Type", "image/svg+xml")
        self.set_header("Cache-Control", "no-cache")
        # A standalone SVG document (with its xmlns, unlike svg_inline) so that <img src> renders it.
        out = io.BytesIO()
        segno.make(url, error="m").save(out, kind="svg", xmldecl=False, nl=False, scale=6, border=2,
                                        dark="#111", light="#fff")
        self.finish(out.getvalue())


class AccessRequiredHandler(SecureHandler):
    """What a browser without the access cookie gets: the page asking for the code."""

    def initialize(self, page: bytes) -> None:
        self.page = page

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Cache-Control", "no-store")
        if self.request.method in ("GET", "HEAD") and self.request.path != "/ws":
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(self.page)
        else:
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("403 Forbidden: this appliance needs its access code\n")


class AccessHandler(SecureHandler):
    """GET: whether this browser is admitted (204) or not (403, the page asking for the
    code). POST `code=…` (form-encoded): the right code sets the cookie (204); a wrong
    one is a 403, too many wrong ones from an address a 429, each with a JSON error code.
    The code comes in the body, so it never appears in a URL or a log line."""

    def initialize(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        app = self.application
        if self.ctx.access is None or (isinstance(app, GatedApplication) and app.admitted(self.request)):
            self.set_status(204)
            self.finish()
            return
        self.set_status(403)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(app.access_page if isinstance(app, GatedApplication) else b"")

    def post(self) -> None:
        gate = self.ctx.access
        if gate is None:
            raise web.HTTPError(404)
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "application/json")
        code = self.get_body_argument("code", "")
        verdict = gate.check(code, self.request.remote_ip or "", time.monotonic())
        if verdict is Verdict.OK:
            # Secure and SameSite=Strict: never sent over plain HTTP (the onboarding
            # port) nor with a request another site starts; HttpOnly: no script reads it.
            self.set_cookie(COOKIE_NAME, gate.cookie(time.time()), path="/", max_age=gate.max_age,
                            httponly=True, secure=True, samesite="Strict")
            self.set_status(204)
            self.finish()
            return
        log.info("access: %s from %s", verdict.value, self.request.remote_ip)
        self.set_status(429 if verdict is Verdict.TOO_MANY else 403)
        self.finish(json.dumps({"error": verdict.value}))


def make_app(ctx: AppContext, **settings: Any) -> web.Application:
    routes: list[Any] = [
        (r"/", PageHandler, {"ctx": ctx, "page": "index.html"}),
        (r"/check", PageHandler, {"ctx": ctx, "page": "check.html"}),  # the device self-test
        (r"/r/([^/]+)", PageHandler, {"ctx": ctx, "page": "room.html"}),
        (r"/ws", SignalingHandler, {"hub": ctx.hub}),
        (r"/access", AccessHandler, {"ctx": ctx}),
        (r"/healthz", HealthHandler, {"ctx": ctx}),
        (r"/meshcall-ca\.crt", CaHandler, {"ctx": ctx}),
        (r"/qr\.svg", QrHandler, {"ctx": ctx}),
        (r"/qr/([^/]+)\.svg", QrHandler, {"ctx": ctx}),
        *ctx.extra_routes,
        (r"/static/(.*)", StaticHandler, {"ctx": ctx}),
    ]
    defaults: dict[str, Any] = {
        "default_handler_class": NotFoundHandler,
        # No per-socket ping timers: the hub pings only sockets that have gone quiet.
        "websocket_ping_interval": 0,
        "websocket_max_message_size": 256 * 1024,  # parse() refuses > 64 KiB with a clear code
        "compress_response": True,
    }
    defaults.update(settings)
    return application(routes, gate=ctx.access, assets=ctx.assets, **defaults)
