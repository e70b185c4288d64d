"""Resilience: the signaling socket drops, the server dies or restarts, the media path breaks."""

from __future__ import annotations

import subprocess
import time
from contextlib import contextmanager
from typing import Iterator

import pytest

from browser.meet import decoding_from, frames_rising, joined_id, pair, room_url, state, stats, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.netns]



def _mark(page, peer_id):
    """Tag a tile element so a test can tell whether it was kept or recreated."""
    page.evaluate("(id) => { document.querySelector(`.tile[data-peer-id='${id}']`).dataset.mark = 'kept'; }", peer_id)


def _still_marked(page, peer_id) -> bool:
    return page.locator(f'.tile[data-peer-id="{peer_id}"][data-mark="kept"]').count() == 1


def test_dropped_signaling_resumes_with_the_same_id_and_media_keeps_flowing(server, open_page):
    a, b, ida, idb = pair(server, open_page, "drop")
    _mark(b, ida)
    a.evaluate("() => window.meshcall.dropSignaling()")
    wait_for(lambda: state(a)["signaling"] == "lost", 2, 0.05, what="the page to notice")
    assert a.locator("#banner").is_visible()
    frames_rising(a, idb)  # media is browser to browser: unaffected
    frames_rising(b, ida)
    wait_for(lambda: state(a)["signaling"] == "joined", 5, what="reconnect")
    assert state(a)["id"] == ida
    assert not a.locator("#banner").is_visible()
    assert _still_marked(b, ida), "the others must keep the resumed peer's tile"
    frames_rising(a, idb)
    frames_rising(b, ida)
    # Signaling works again after the resume: a camera toggle reaches the other side.
    a.locator("#ctl-cam").click()
    wait_for(lambda: b.locator(f'.tile[data-peer-id="{ida}"]').get_attribute("data-video") == "false", 5,
             what="peer-updated after resume")


def test_server_killed_and_restarted_pages_rejoin_without_reload(server, open_page):
    a, b, ida, idb = pair(server, open_page, "restart")
    a.evaluate("() => { window.__sameDocument = true; }")
    b.evaluate("() => { window.__sameDocument = true; }")
    server.proc.kill()
    server.proc.wait(5)
    wait_for(lambda: state(a)["signaling"] == "lost" and state(b)["signaling"] == "lost", 15,
             what="both pages to notice the server is gone")
    frames_rising(a, idb)  # the call goes on without the server
    server.start()
    t0 = time.monotonic()

    def back_together():
        sa, sb = state(a), state(b)
        if sa["phase"] != "joined" or sb["phase"] != "joined":
            return False
        return decoding_from(a, {sb["id"]}) and decoding_from(b, {sa["id"]}) and (sa["id"], sb["id"])

    new_a, new_b = wait_for(back_together, 10, what="both pages back in one room with media")
    took = time.monotonic() - t0
    frames_rising(a, new_b)
    frames_rising(b, new_a)
    assert a.evaluate("() => window.__sameDocument") and b.evaluate("() => window.__sameDocument")  # no reload
    assert a.locator(".tile").count() == 2 and b.locator(".tile").count() == 2
    print(f"\nserver restart: both pages decoding each other {took:.2f}s after the new server answered")


@contextmanager
def udp_blackhole() -> Iterator[None]:
    """Starve every UDP packet on loopback (an HTB class of 8 bit/s); TCP (signaling) is untouched."""
    cmds = [
        "tc qdisc add dev lo root handle 1: htb default 10 r2q 1",
        "tc class add dev lo parent 1: classid 1:10 htb rate 10gbit quantum 60000",
        "tc class add dev lo parent 1: classid 1:20 htb rate 8bit ceil 8bit burst 1 cburst 1 quantum 1500",
        "tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff flowid 1:20",
        "tc filter add dev lo parent 1: protocol ipv6 prio 2 u32 match ip6 protocol 17 0xff flowid 1:20",
    ]
    try:
        for cmd in cmds:
            subprocess.run(cmd.split(), check=True, capture_output=True)
        yield
    finally:
        subprocess.run("tc qdisc del dev lo root".split(), capture_output=True)


def test_broken_media_path_is_repaired_by_an_ice_restart(server, open_page):
    a, b, ida, idb = pair(server, open_page, "ice")
    with udp_blackhole():
        wait_for(lambda: a.locator(f'.tile[data-peer-id="{idb}"]').get_attribute("data-state") == "reconnecting",
                 20, what="the tile to show reconnecting")
        wait_for(lambda: state(a)["iceRestarts"] + state(b)["iceRestarts"] > 0, 20, what="an ICE restart")
    t0 = time.monotonic()
    wait_for(lambda: state(a)["peers"].get(idb) == "connected" and state(b)["peers"].get(ida) == "connected",
             15, what="connected again")
    frames_rising(a, idb)
    frames_rising(b, ida)
    took = time.monotonic() - t0
    assert a.locator(f'.tile[data-peer-id="{idb}"]').get_attribute("data-state") == "connected"
    sa, sb = state(a), state(b)
    assert sa["id"] == ida and sb["id"] == idb
    print(f"\nmedia path: video back {took:.2f}s after the path was restored "
          f"(ICE restarts {sa['iceRestarts']}+{sb['iceRestarts']}, rebuilds {sa['rebuilds']}+{sb['rebuilds']})")


def test_a_vanished_browser_is_dropped_within_ten_seconds(server, browser, open_page):
    a = open_page(room_url(server.url, "vanish", "Ada"))
    ctx = browser.new_context(ignore_https_errors=True)
    try:
        b = open_page(room_url(server.url, "vanish", "Grace"), context=ctx)
        ida, idb = joined_id(a), joined_id(b)
        wait_for(lambda: decoding_from(a, {idb}), 20, what="media")
        cdp = ctx.new_cdp_session(b)
        t0 = time.monotonic()
        try:
            cdp.send("Page.crash", timeout=2000)  # the renderer dies: no leave, no close frame
        except Exception:
            pass
        wait_for(lambda: a.locator(f'.tile[data-peer-id="{idb}"]').count() == 0, 12, what="the tile to go")
        took = time.monotonic() - t0
    finally:
        ctx.close()
    assert took <= 10.5, took
    assert state(a)["peers"] == {}
    print(f"\nvanished peer: tile gone {took:.2f}s after its renderer crashed")


def test_sigterm_shows_server_went_away_and_pages_come_back(server, open_page):
    a, b, ida, idb = pair(server, open_page, "sigterm")
    code, took = server.terminate(timeout=5)
    assert code == 0 and took < 2, (code, took)
    for page in (a, b):
        wait_for(lambda: page.locator("#banner").is_visible(), 5, what="the banner")
        text = page.locator("#banner").inner_text()
        assert "went away" in text and "restarting" in text, text  # the server's own reason stays
    frames_rising(a, idb)  # media keeps flowing while the server is away
    frames_rising(b, ida)
    server.start()

    def back():
        sa, sb = state(a), state(b)
        return (sa["phase"] == sb["phase"] == "joined" and decoding_from(a, {sb["id"]})
                and decoding_from(b, {sa["id"]}))

    wait_for(back, 15, what="both pages back in one room")
    for page in (a, b):
        assert not page.locator("#banner").is_visible()
    names = {b.locator(f'.tile[data-peer-id="{state(a)["id"]}"] .name').inner_text(),
             a.locator(f'.tile[data-peer-id="{state(b)["id"]}"] .name').inner_text()}
    assert names == {"Ada", "Grace"}
    print(f"\nSIGTERM: exit code {code} after {took:.2f}s")


def test_a_connection_an_ice_restart_cannot_save_is_rebuilt(server, open_page):
    a, b, ida, idb = pair(server, open_page, "rebuild")
    _mark(a, idb)
    old_pc = a.evaluate("(id) => { window.__oldPc = window.meshcall.peers().get(id); return !!window.__oldPc; }", idb)
    with udp_blackhole():
        wait_for(lambda: state(a)["rebuilds"] + state(b)["rebuilds"] > 0, 40, 0.5,
                 what="the connection to be rebuilt after a failed ICE restart")
    wait_for(lambda: state(a)["peers"].get(idb) == "connected" and state(b)["peers"].get(ida) == "connected",
             30, what="connected again")
    frames_rising(a, idb)
    frames_rising(b, ida)
    assert old_pc and a.evaluate("(id) => window.meshcall.peers().get(id) !== window.__oldPc", idb)
    assert _still_marked(a, idb), "the tile stays while its connection is rebuilt"
    sa, sb = state(a), state(b)
    print(f"\nrebuild: ICE restarts {sa['iceRestarts']}+{sb['iceRestarts']}, rebuilds {sa['rebuilds']}+{sb['rebuilds']}")
