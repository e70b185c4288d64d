"""Pages that help a device find, trust and test the appliance: the iOS profile, the
printable room card and the device self-test with its ICE servers."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import segno
from tornado import web

from . import profile
from .protocol import ROOM_RE
from .signaling import local_host
from .web import SecureHandler

# Medium error correction: a printed card survives a crease or a thumb; segno raises it
# further when that costs no size.
QR_ERROR = "m"
QR_BORDER = 4  # the quiet zone ISO/IEC 18004 asks for; the print layout adds no margin of its own


@dataclass
class DeviceInfo:
    """What these pages need from the running appliance, asked for at each request:
    addresses and names can change while it runs."""

    assets: Path
    ca_pem: bytes | None
    join_urls: Callable[[], list[str]]
    onboarding_urls: Callable[[], list[str]]
    ice_for: Callable[[str, str], dict[str, Any]]
    wifi_ssid: str | None = None
    wifi_password: str | None = None


def wifi_escape(text: str) -> str:
    """Escape a field of a Wi-Fi QR code: backslash, semicolon, comma, double quote and
    colon get a backslash (the `WIFI:` format as phones' camera apps read it, from the
    ZXing "Barcode Contents" description)."""
    return "".join("\\" + c if c in '\\;,":' else c for c in text)


def wifi_payload(ssid: str, password: str | None) -> str:
    if password:
        return f"WIFI:T:WPA;S:{wifi_escape(ssid)};P:{wifi_escape(password)};;"
    return f"WIFI:T:nopass;S:{wifi_escape(ssid)};;"


def qr_svg(data: str) -> str:
    """An inline <svg> (no XML declaration, no namespace) that scales with its box: a
    viewBox and no fixed size; the print CSS decides how large it is."""
    return str(segno.make(data, error=QR_ERROR).svg_inline(scale=1, border=QR_BORDER, omitsize=True,
                                                           svgclass="qr", lineclass="qr-modules"))


class ProfileHandler(SecureHandler):
    def initialize(self, ca_pem: bytes | None) -> None:
        self.ca_pem = ca_pem

    def get(self) -> None:
        if self.ca_pem is None:
            raise web.HTTPError(404)  # own certificate (--cert): there is no CA of ours to trust
        self.set_header("Content-Type", profile.MIME)
        self.set_header("Content-Disposition", f'attachment; filename="{profile.FILENAME}"')
        self.set_header("Cache-Control", "no-cache")
        self.finish(profile.mobileconfig(self.ca_pem))


class CardHandler(SecureHandler):
    def initialize(self, info: DeviceInfo) -> None:
        self.info = info

    def get_template_path(self) -> str:
        return str(self.info.assets)

    def get(self, room: str) -> None:
        if not ROOM_RE.fullmatch(room):
            raise web.HTTPError(404)
        joins = self.info.join_urls()
        if not joins:
            raise web.HTTPError(503, reason="no join address the certificate covers")
        # Addresses come first in join_urls: they work on every phone, .local needs mDNS.
        room_url = f"{joins[0]}r/{room}"
        by_name = next((f"{u}r/{room}" for u in joins if ".local" in u and u != joins[0]), None)
        onboarding = self.info.onboarding_urls()
        wifi = (wifi_payload(self.info.wifi_ssid, self.info.wifi_password)
                if self.info.wifi_ssid else None)
        self.set_header("Cache-Control", "no-cache")
        self.render("card.html", room=room, room_url=room_url, by_name=by_name,
                    room_qr=qr_svg(room_url),
                    onboarding_url=onboarding[0] if onboarding else None,
                    onboarding_qr=qr_svg(onboarding[0]) if onboarding else None,
                    wifi_ssid=self.info.wifi_ssid, wifi_password=self.info.wifi_password,
                    wifi_qr=qr_svg(wifi) if wifi else None)


class CheckIceHandler(SecureHandler):
    """The ICE servers a welcome would carry, for a page that has not joined a room:
    TURN credentials under a throwaway name, valid as long as a peer's."""

    def initialize(self, info: DeviceInfo) -> None:
        self.info = info

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(self.info.ice_for("check-" + secrets.token_hex(4), self._local_host())))

    def _local_host(self) -> str:
        return local_host(self.request)


def https_routes(info: DeviceInfo) -> list[Any]:
    return [
        (r"/meshcall\.mobileconfig", ProfileHandler, {"ca_pem": info.ca_pem}),
        (r"/card/([^/]+)", CardHandler, {"info": info}),
        (r"/check/ice", CheckIceHandler, {"info": info}),
    ]
