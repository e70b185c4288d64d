"""Every response on both ports carries the security headers, and a malformed path is a
400 with one short INFO line, never a traceback: the real server, real requests."""

from __future__ import annotations

import http.client
from typing import Iterator

import pytest

from helpers.procs import Meshcall, insecure_context
from meshcall.server import LOG_BURST
from meshcall.web import SECURITY_HEADERS

WS_HEADERS = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


@pytest.fixture(scope="module")
def mc() -> Iterator[Meshcall]:
    with Meshcall() as server:
        yield server


def request(mc: Meshcall, method: str, path: str, headers: dict[str, str] | None = None,
            https: bool = True, body: bytes | None = None) -> http.client.HTTPResponse:
    conn: http.client.HTTPConnection
    if https:
        conn = http.client.HTTPSConnection("127.0.0.1", mc.port, context=insecure_context(), timeout=5)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", mc.http_port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp
    finally:
        conn.close()


HTTPS_CASES = [
    ("GET", "/", {}, 200),
    ("HEAD", "/", {}, 200),
    ("GET", "/r/team", {}, 200),
    ("GET", "/r/%00", {}, 404),
    ("GET", "/healthz", {}, 200),
    ("GET", "/meshcall-ca.crt", {}, 200),
    ("GET", "/qr.svg", {}, 200),
    ("GET", "/qr/team.svg", {}, 200),
    ("GET", "/qr/%ff.svg", {}, 400),
    ("GET", "/static/js/signaling.js", {}, 200),
    ("GET", "/static/no-such-file.js", {}, 404),
    ("GET", "/static/%00", {}, 400),
    ("GET", "/no/such/page", {}, 404),
    ("POST", "/", {}, 405),
    ("GET", "/ws", {}, 400),  # no Upgrade header
    ("GET", "/ws", {**WS_HEADERS, "Origin": "https://evil.example"}, 403),
    ("POST", "/ws", {}, 405),
    ("PUT", "/healthz", {}, 405),
]
HTTP_CASES = [
    ("GET", "/", {}, 200),
    ("GET", "/meshcall-ca.crt", {}, 200),
    ("GET", "/static/onboarding.css", {}, 200),
    ("GET", "/r/team", {}, 307),
    ("GET", "/static/%00", {}, 307),
    ("POST", "/", {}, 405),
]


@pytest.mark.parametrize("https,method,path,headers,status",
                         [(True, *c) for c in HTTPS_CASES] + [(False, *c) for c in HTTP_CASES])
def test_every_response_carries_the_security_headers(mc: Meshcall, https: bool, method: str, path: str,
                                                     headers: dict[str, str], status: int) -> None:
    resp = request(mc, method, path, headers, https=https)
    assert resp.status == status
    for name, value in SECURITY_HEADERS.items():
        assert resp.getheader(name) == value, f"{method} {path}: {name}"


def test_not_modified_carries_them_too(mc: Meshcall) -> None:
    first = request(mc, "GET", "/static/js/signaling.js")
    etag = first.getheader("Etag")
    assert etag
    again = request(mc, "GET", "/static/js/signaling.js", {"If-None-Match": etag})
    assert again.status == 304
    assert again.getheader("Content-Security-Policy") == SECURITY_HEADERS["Content-Security-Policy"]


MALFORMED = [
    "/static/%00", "/static/js/%00.js", "/static/%ff", "/static/%c0%ae%c0%ae/x", "/static/" + "a" * 3000,
    "/static/..", "/static/../meshcall/server.py", "/static/%2e%2e/x", "/static/..%2fx", "/static/js/../../x",
    "/static/a%5cb", "/static/a%0ab", "/static/a//b", "/static/", "/static/js/",
]


def test_malformed_static_paths_are_400_with_a_short_line() -> None:
    # A server of its own: the request log is rate-limited, and other tests' 4xx lines
    # would use up this one's share.
    with Meshcall() as mc:
        mc.wait_for("data dir:")  # the last start-up line: what follows is this test's
        before = len(mc.output())
        for path in MALFORMED:
            resp = request(mc, "GET", path)
            assert resp.status == 400, path
            assert resp.getheader("Content-Type") == "text/plain; charset=utf-8"
        new = mc.output()[before:]
        # A real file beside them is still served.
        assert request(mc, "GET", "/static/js/signaling.js").status == 200
    lines = new.splitlines()
    assert "Traceback" not in new and not any(" ERROR " in line for line in lines), new
    logged = [line for line in lines if "http: 400 GET /static/" in line]
    # Rate-limited per template: a burst (LOG_BURST per 10 s; two windows on a slow run)
    # and possibly a summary, never one per request.
    assert 1 <= len(logged) <= 2 * LOG_BURST < len(MALFORMED), logged
    assert all(" INFO " in line and len(line) < 300 for line in lines), new
    assert len(new) < 4096


def test_a_valid_ws_upgrade_still_switches(mc: Meshcall) -> None:
    origin = f"https://127.0.0.1:{mc.port}"
    conn = http.client.HTTPSConnection("127.0.0.1", mc.port, context=insecure_context(), timeout=5)
    try:
        conn.request("GET", "/ws", headers={**WS_HEADERS, "Origin": origin, "Host": f"127.0.0.1:{mc.port}"})
        resp = conn.getresponse()
        assert resp.status == 101
    finally:
        conn.close()

