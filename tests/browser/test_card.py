"""The printable room card in Chromium: one page on A4 and on Letter, QR codes that
encode the right links, nothing loaded from elsewhere and nothing blocked by the CSP."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from helpers.procs import Meshcall
from helpers.qr import encoded, svg_matrix
from meshcall import devices

pytestmark = [pytest.mark.browser, pytest.mark.netns]

SSID, PASSWORD = 'Office "5G"', "s;cret"


@pytest.fixture
def card_server() -> Iterator[Meshcall]:
    with Meshcall(["--wifi-ssid", SSID, "--wifi-password", PASSWORD]) as mc:
        mc.wait_for("meshcall 0.1.0: ready")
        yield mc


def pdf_pages(path: Path) -> int:
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, timeout=30, check=True).stdout
    match = re.search(r"^Pages:\s+(\d+)", info, re.M)
    assert match, info
    return int(match.group(1))


@pytest.mark.parametrize("room", ["team", "x" * 40])
def test_card_prints_on_one_page_with_qr_codes_of_the_right_links(card_server: Meshcall, open_page: Any,
                                                                  tmp_path: Path, room: str) -> None:
    mc = card_server
    page = open_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto(f"{mc.url}/card/{room}")
    assert page.locator("h1").inner_text() == room
    for fmt in ("A4", "Letter"):
        out = tmp_path / f"{fmt}.pdf"
        page.pdf(path=str(out), format=fmt, print_background=True, prefer_css_page_size=True)
        assert pdf_pages(out) == 1, f"{fmt}: more than one page"
    room_url = f"https://127.0.0.1:{mc.port}/r/{room}"
    onboarding_url = f"http://127.0.0.1:{mc.http_port}/"
    svgs = {kind: page.locator(f'figure[data-qr="{kind}"] svg').evaluate("e => e.outerHTML")
            for kind in ("room", "onboarding", "wifi")}
    assert svg_matrix(svgs["room"]) == encoded(room_url)
    assert svg_matrix(svgs["onboarding"]) == encoded(onboarding_url)
    assert svg_matrix(svgs["wifi"]) == encoded(devices.wifi_payload(SSID, PASSWORD))
    assert room_url in page.locator("main").inner_text()
    # The main code is the big one: what a phone across the table must read.
    sizes = {k: page.locator(f'figure[data-qr="{k}"] svg').bounding_box()["width"] for k in svgs}
    assert sizes["room"] > 2 * sizes["onboarding"]
    assert all(url.startswith(mc.url) for url in requests), requests
    assert not problems, problems
