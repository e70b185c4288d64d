"""Two people whose network keeps them apart: --relay-only sends all media through the
appliance's own TURN server, and Chromium still decodes video both ways."""

from __future__ import annotations

import time

import pytest

from browser.meet import decoding_from, frames_rising, joined_id, room_url, stats, wait_for
from helpers.netns import private_lan
from helpers.procs import Meshcall

pytestmark = [pytest.mark.browser, pytest.mark.netns]


def test_relay_only_call_goes_through_the_built_in_turn(open_page):
    with private_lan() as (appliance_ip, _):
        with Meshcall(["--relay-only"], turn=True, host=appliance_ip) as mc:
            # The self-check runs as the server starts; it logs once the relay answered.
            mc.wait_for("TURN: self-check: relay works", 20)
            a = open_page(room_url(mc.url, "relayed", "Ada"))
            b = open_page(room_url(mc.url, "relayed", "Grace"))
            ida, idb = joined_id(a), joined_id(b)
            wait_for(lambda: decoding_from(a, {idb}) and decoding_from(b, {ida}), 30, what="relayed media both ways")
            frames_rising(a, idb)
            frames_rising(b, ida)
            for page, other in ((a, idb), (b, ida)):
                pair = stats(page)[other]["pair"]
                assert pair["local"] == "relay" and pair["remote"] == "relay", pair
                # Both relayed candidates are on the appliance itself.
                assert pair["localAddress"] == appliance_ip and pair["remoteAddress"] == appliance_ip, pair
            policy = a.evaluate("() => [...window.meshcall.peers().values()][0].getConfiguration().iceTransportPolicy")
            assert policy == "relay"


def test_a_relayed_call_takes_fresh_credentials_and_keeps_going(open_page):
    """A room display stays for days: compressed here to credentials that live 6 s."""
    with private_lan() as (appliance_ip, _):
        with Meshcall(["--relay-only", "--turn-credential-ttl", "6"], turn=True, host=appliance_ip) as mc:
            a = open_page(room_url(mc.url, "display", "Lobby"))
            b = open_page(room_url(mc.url, "display", "Ada"))
            ida, idb = joined_id(a), joined_id(b)
            wait_for(lambda: decoding_from(a, {idb}) and decoding_from(b, {ida}), 30, what="relayed media")
            username = "() => [...window.meshcall.peers().values()][0].getConfiguration().iceServers[1].username"
            first = a.evaluate(username)
            # New credentials arrive every 3 s and are applied to the open connection.
            wait_for(lambda: a.evaluate(username) != first, 10, what="fresh TURN credentials on the connection")
            time.sleep(7)  # past the first username's expiry: the relay must not depend on it
            frames_rising(a, idb)
            frames_rising(b, ida)
            assert stats(a)[idb]["pair"]["local"] == "relay"
