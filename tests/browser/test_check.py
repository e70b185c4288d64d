"""The device self-test (/check) in Chromium on a test LAN: every step green against a
healthy appliance; the relay step red, with its fix, when the appliance runs no TURN."""

from __future__ import annotations

import json
import socket
from typing import Any, Iterator

import pytest

from helpers.netns import private_lan
from helpers.procs import Meshcall, free_port

pytestmark = [pytest.mark.browser, pytest.mark.netns]

STEPS = ["secure", "websocket", "camera", "microphone", "host", "stun", "turn", "autoplay"]
# Gathering waits for every server; Chrome gives an unanswered one about 10 s.
DONE_WITHIN_MS = 30_000


@pytest.fixture
def lan() -> Iterator[str]:
    with private_lan() as (here, _):
        yield here


def run_check(open_page: Any, url: str) -> tuple[dict[str, str], dict[str, str], str]:
    page = open_page(url + "/check")
    page.wait_for_selector('#summary:not([data-state="running"])', timeout=DONE_WITHIN_MS)
    states = {s: page.get_attribute(f'[data-step="{s}"]', "data-state") for s in STEPS}
    fixes = {s: page.inner_text(f'[data-step="{s}"] .fix') for s in STEPS}
    return states, fixes, page.inner_text("#summary")


def test_every_step_is_green_on_a_healthy_appliance(lan: str, open_page: Any) -> None:
    with Meshcall(host=lan, turn=True) as mc:
        states, fixes, summary = run_check(open_page, mc.url)
        assert states == {s: "ok" for s in STEPS}, (states, fixes)
        assert summary.startswith("meshcall check: all 8 OK (Chrome ")
        assert not any(fixes.values())


def test_without_turn_the_relay_step_is_red_with_its_fix(lan: str, open_page: Any) -> None:
    with Meshcall(host=lan) as mc:  # the helper starts it with --no-turn
        states, fixes, summary = run_check(open_page, mc.url)
        assert states["turn"] == "fail" and "without --no-turn" in fixes["turn"]
        assert states["stun"] == "fail"
        assert {s: states[s] for s in ("secure", "websocket", "camera", "microphone", "host", "autoplay")} == \
            dict.fromkeys(("secure", "websocket", "camera", "microphone", "host", "autoplay"), "ok")
        assert summary.startswith("meshcall check: 6 of 8 OK, failed: STUN, relay")


def test_a_stun_server_that_does_not_answer_is_red(lan: str, open_page: Any) -> None:
    # "No reflexive candidate" is normal on a flat LAN; only a missing answer is a failure.
    # The page is pointed at a port where nothing listens.
    dead = free_port(socket.SOCK_DGRAM)
    with Meshcall(host=lan) as mc:
        page = open_page()
        page.route("**/check/ice", lambda route: route.fulfill(
            status=200, content_type="application/json",
            body=json.dumps({"iceServers": [{"urls": [f"stun:{lan}:{dead}"]}], "iceTransportPolicy": "all"})))
        page.goto(mc.url + "/check")
        page.wait_for_selector('#summary:not([data-state="running"])', timeout=DONE_WITHIN_MS)
        assert page.get_attribute('[data-step="stun"]', "data-state") == "fail"
        assert "port 3478" in page.inner_text('[data-step="stun"] .fix')
        assert page.get_attribute('[data-step="host"]', "data-state") == "ok"
