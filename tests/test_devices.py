"""The iOS profile, the room card's content and the self-test's ICE endpoint, fetched
from a running appliance as a device would."""

from __future__ import annotations

import json
import plistlib
import re
import ssl
import urllib.error
import urllib.request
from typing import Iterator

import pytest

from helpers.procs import Meshcall, insecure_context
from helpers.qr import encoded, svg_matrix
from meshcall import devices

PROFILE_MIME = "application/x-apple-aspen-config"


def fetch(url: str) -> tuple[dict[str, str], bytes]:
    with urllib.request.urlopen(url, context=insecure_context(), timeout=5) as resp:
        return dict(resp.headers), resp.read()


@pytest.fixture(scope="module")
def mc() -> Iterator[Meshcall]:
    with Meshcall(["--wifi-ssid", 'Office;"5G"', "--wifi-password", "p:a,ss\\w"], turn=True) as running:
        running.wait_for("meshcall 0.1.0: ready")
        yield running


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_ios_profile_carries_the_ca_byte_for_byte(mc: Meshcall, scheme: str) -> None:
    port = mc.http_port if scheme == "http" else mc.port
    headers, body = fetch(f"{scheme}://127.0.0.1:{port}/meshcall.mobileconfig")
    assert headers["Content-Type"] == PROFILE_MIME
    plist = plistlib.loads(body)
    assert plist["PayloadType"] == "Configuration" and plist["PayloadVersion"] == 1
    (payload,) = plist["PayloadContent"]
    assert payload["PayloadType"] == "com.apple.security.root"
    ca_der = ssl.PEM_cert_to_DER_cert((mc.data_dir / "ca.crt").read_text())
    assert payload["PayloadContent"] == ca_der
    assert payload["PayloadUUID"] != plist["PayloadUUID"]
    assert fetch(f"{scheme}://127.0.0.1:{port}/meshcall.mobileconfig")[1] == body  # stable: reinstall replaces


def test_ca_download_keeps_its_content_type(mc: Meshcall) -> None:
    headers, body = fetch(f"https://127.0.0.1:{mc.port}/meshcall-ca.crt")
    assert headers["Content-Type"] == "application/x-x509-ca-cert"
    assert body == (mc.data_dir / "ca.crt").read_bytes()


def test_onboarding_page_links_the_profile_and_the_self_test(mc: Meshcall) -> None:
    _, body = fetch(f"http://127.0.0.1:{mc.http_port}/")
    html = body.decode()
    assert 'href="/meshcall.mobileconfig"' in html
    assert "Settings › General › About › Certificate Trust Settings" in html
    assert f'href="https://127.0.0.1:{mc.port}/check"' in html


def test_check_ice_hands_out_the_welcome_servers(mc: Meshcall) -> None:
    _, body = fetch(f"https://127.0.0.1:{mc.port}/check/ice")
    ice = json.loads(body)
    stun, turn = ice["iceServers"]
    assert stun == {"urls": [f"stun:127.0.0.1:{mc.turn_port}"]}
    assert turn["urls"][0] == f"turn:127.0.0.1:{mc.turn_port}?transport=udp"
    # "<expiry>:check-<8 hex>": a throwaway TURN user of its own, never a caller's id.
    assert re.fullmatch(r"\d+:check-[0-9a-f]{8}", turn["username"]), turn["username"]
    assert turn["credential"]
    assert ice["iceTransportPolicy"] == "all"


def test_card_is_a_page_with_inline_qr_codes_and_no_script(mc: Meshcall) -> None:
    headers, body = fetch(f"https://127.0.0.1:{mc.port}/card/team")
    html = body.decode()
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "<script" not in html and html.count("<svg") == 3
    assert f"https://127.0.0.1:{mc.port}/r/team" in html
    with pytest.raises(urllib.error.HTTPError) as err:
        fetch(f"https://127.0.0.1:{mc.port}/card/{'x' * 200}")
    assert err.value.code == 404
    err.value.close()


@pytest.mark.parametrize("ssid,password,payload", [
    ("Office", "secret", "WIFI:T:WPA;S:Office;P:secret;;"),
    ('Office;"5G"', "p:a,ss\\w", 'WIFI:T:WPA;S:Office\\;\\"5G\\";P:p\\:a\\,ss\\\\w;;'),
    ("Guest", None, "WIFI:T:nopass;S:Guest;;"),
])
def test_wifi_payload_escapes_special_characters(ssid: str, password: str | None, payload: str) -> None:
    assert devices.wifi_payload(ssid, password) == payload


def test_svg_matrix_reads_what_segno_writes() -> None:
    # The decoder used below, checked against segno's own module matrix.
    assert svg_matrix(devices.qr_svg("https://example.local/")) == encoded("https://example.local/")
    assert svg_matrix(devices.qr_svg("https://example.local/")) != encoded("https://example.local/x")
