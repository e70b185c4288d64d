"""The plain-HTTP port: a page that helps each device trust this appliance once,
the CA certificate download, and a redirect to HTTPS for everything else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tornado import web

from .netinfo import url_host
from .web import SecureHandler, send_ca


@dataclass
class Onboarding:
    https_port: int
    ca_pem: bytes | None
    https_urls: list[str]
    fingerprint: str
    ca_fingerprint: str | None


class _Base(SecureHandler):
    def initialize(self, info: Onboarding) -> None:
        self.info = info

    def https_url(self, path: str) -> str:
        host = url_host(self.request.host_name)
        port = "" if self.info.https_port == 443 else f":{self.info.https_port}"
        return f"https://{host}{port}{path}"


class OnboardingPage(_Base):
    def get(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.render("onboarding.html", info=self.info, here=self.https_url("/"))


class CaDownload(_Base):
    def get(self) -> None:
        send_ca(self, self.info.ca_pem)


class ToHttps(_Base):
    def prepare(self) -> None:
        # 307 keeps the method; a GET for a room link lands on the same room over HTTPS.
        self.redirect(self.https_url(self.request.uri or "/"), status=307)


def make_onboarding_app(info: Onboarding, template_path: str, **settings: Any) -> web.Application:
    return web.Application(
        [
            (r"/", OnboardingPage, {"info": info}),
            (r"/meshcall-ca\.crt", CaDownload, {"info": info}),
            (r"/static/(onboarding\.css)", web.StaticFileHandler, {"path": template_path}),
            (r"/.*", ToHttps, {"info": info}),
        ],
        template_path=template_path,
        autoescape="xhtml_escape",
        **settings,
    )
