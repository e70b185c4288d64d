"""The plain-HTTP port: a page that helps each device trust this appliance once,
the CA certificate download, and a redirect to HTTPS for everything else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tornado import web

from .devices import ProfileHandler
from .netinfo import url_host
from .web import CheckedStaticFileHandler, SecureHandler, application, send_ca


@dataclass
class Onboarding:
    """What the page shows. The addresses and the server certificate are asked for at each
    view: both change while running (a new network, a reissued leaf); the CA does not."""

    https_port: int
    ca_pem: bytes | None
    ca_fingerprint: str | None
    current_urls: Callable[[], list[str]]
    current_fingerprint: Callable[[], str]

    @property
    def https_urls(self) -> list[str]:
        return self.current_urls()

    @property
    def fingerprint(self) -> str:
        return self.current_fingerprint()


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
        self.render("onboarding.html", info=self.info, here=self.https_url("/"), check=self.https_url("/check"))


class CaDownload(_Base):
    def get(self) -> None:
        send_ca(self, self.info.ca_pem)


class ToHttps(_Base):
    def prepare(self) -> None:
        # 307 keeps the method; a GET for a room link lands on the same room over HTTPS.
        self.redirect(self.https_url(self.request.uri or "/"), status=307)


def make_onboarding_app(info: Onboarding, template_path: str, **settings: Any) -> web.Application:
    return application(
        [
            (r"/", OnboardingPage, {"info": info}),
            (r"/meshcall-ca\.crt", CaDownload, {"info": info}),
            (r"/meshcall\.mobileconfig", ProfileHandler, {"ca_pem": info.ca_pem}),
            (r"/static/(onboarding\.css)", CheckedStaticFileHandler, {"path": template_path}),
            (r"/.*", ToHttps, {"info": info}),
        ],
        template_path=template_path,
        autoescape="xhtml_escape",
        **settings,
    )
