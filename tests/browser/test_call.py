"""The meeting page in a real Chromium against a real meshcall: the mesh, the grid, the controls."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from browser.meet import (decoding_from, frames_rising, joined_id, logs, pair, rising, room_url, stalled, state, stats,
                          tiles_agree, wait_for)

pytestmark = [pytest.mark.browser, pytest.mark.netns]


def test_two_people_see_and_hear_each_other(server, open_page):
    requests: list[str] = []
    t0 = time.monotonic()
    pages = []
    for name in ("Ada", "Grace"):
        page = open_page()
        page.on("request", lambda req: requests.append(req.url))
        page.goto(room_url(server.url, "two-people", name))
        pages.append(page)
    a, b = pages
    ida, idb = joined_id(a), joined_id(b)
    wait_for(lambda: decoding_from(a, {idb}) and decoding_from(b, {ida}), 20, what="media both ways")
    first_frame = time.monotonic() - t0
    frames_rising(a, idb)
    frames_rising(b, ida)
    for page, other in ((a, idb), (b, ida)):
        pair = stats(page)[other]["pair"]
        assert pair and pair["local"] == "host" and pair["remote"] == "host", pair
        tile = page.locator(f'.tile[data-peer-id="{other}"]')
        assert tile.get_attribute("data-state") == "connected"
    assert a.locator('.tile[data-self="true"] .you').inner_text() == "You"
    assert "mirror" in (a.locator('.tile[data-self="true"] video').get_attribute("class") or "")
    origin = urlsplit(server.url).netloc
    foreign = [u for u in requests if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != origin]
    assert not foreign, foreign
    print(f"\ntwo people: first frames both ways {first_frame:.2f}s after opening the first page")



def test_mic_and_camera_toggles_reach_the_other_side_and_stop_sending(server, open_page):
    a, b, ida, idb = pair(server, open_page, "toggles")
    tile_on_b = b.locator(f'.tile[data-peer-id="{ida}"]')
    mic, cam = a.locator("#ctl-mic"), a.locator("#ctl-cam")

    a.locator("body").press("m")  # keyboard shortcut
    wait_for(lambda: tile_on_b.get_attribute("data-audio") == "false", 5, what="mic-off on the other page")
    assert tile_on_b.locator(".mic-off").is_visible()
    assert mic.get_attribute("aria-pressed") == "false"
    wait_for(lambda: stalled(a, idb, "audioPacketsSent"), 10, what="audio sending to stop")

    cam.click()
    wait_for(lambda: tile_on_b.get_attribute("data-video") == "false", 5, what="camera-off on the other page")
    assert tile_on_b.locator(".avatar").inner_text() == "A"
    assert cam.get_attribute("aria-pressed") == "false"
    wait_for(lambda: stalled(a, idb, "framesEncoded"), 10, what="video sending to stop")
    wait_for(lambda: stalled(b, ida, "framesDecoded"), 10, what="the other page to stop decoding")

    a.locator("body").press("v")
    a.locator("body").press("m")
    wait_for(lambda: tile_on_b.get_attribute("data-video") == "true"
             and tile_on_b.get_attribute("data-audio") == "true", 5, what="media back on at the other page")
    assert mic.get_attribute("aria-pressed") == "true" and cam.get_attribute("aria-pressed") == "true"
    wait_for(lambda: rising(a, idb, "framesEncoded") and rising(a, idb, "audioPacketsSent"), 10,
             what="sending to resume")
    frames_rising(b, ida)
    tracks = a.evaluate("() => window.meshcall.localTracks().map(t => [t.kind, t.enabled, t.readyState])")
    assert sorted(tracks) == [["audio", True, "live"], ["video", True, "live"]]


def test_a_hostile_name_is_shown_as_text(server, open_page):
    name = "<img src=x onerror=alert(1)>"
    dialogs: list[str] = []
    a, b = open_page(), open_page()
    for page in (a, b):  # listening before anything renders the name
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    a.goto(room_url(server.url, "names", name))
    b.goto(room_url(server.url, "names", "Grace"))
    ida, idb = joined_id(a), joined_id(b)
    wait_for(lambda: decoding_from(a, {idb}) and decoding_from(b, {ida}), 20, what="media both ways")
    assert b.locator(f'.tile[data-peer-id="{ida}"] .name').inner_text() == name
    assert a.locator('.tile[data-self="true"] .name').inner_text() == name
    for page in (a, b):
        assert page.locator("img[src='x']").count() == 0  # anywhere in the document
    assert b.locator(f'.tile[data-peer-id="{ida}"]').get_attribute("aria-label") == name
    assert not dialogs


def test_a_closed_tab_disappears_from_the_grid(server, open_page):
    a, b, ida, idb = pair(server, open_page, "closing")
    assert a.locator(".tile").count() == 2
    b.close()
    wait_for(lambda: a.locator(f'.tile[data-peer-id="{idb}"]').count() == 0, 10, what="the tile to go")
    assert a.locator(".tile").count() == 1
    assert state(a)["peers"] == {}


def test_six_people_form_a_full_mesh_and_a_seventh_is_turned_away(server, browser, open_page):
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 640, "height": 480})
    try:
        t0 = time.monotonic()
        pages = [open_page(room_url(server.url, "six", f"P{i}"), context=context) for i in range(6)]
        ids = [joined_id(p, 30) for p in pages]
        assert len(set(ids)) == 6
        for page, me in zip(pages, ids):
            others = set(ids) - {me}
            try:
                wait_for(lambda: decoding_from(page, others), 60, 0.5, what=f"{me} decoding all five others")
            except AssertionError:
                print(stats(page))
                logs(page, me, ids, server)
                raise
        mesh = time.monotonic() - t0
        for page, me in zip(pages, ids):
            assert page.locator(".tile").count() == 6
            # Tiles follow their connections, which on a starved page can all be
            # `disconnected` for a moment (consent checks answered late): they come back.
            wait_for(lambda: tiles_agree(page, me), 20, 0.5, what=f"{me}: six tiles connected")

        seventh = open_page(room_url(server.url, "six", "Late"), context=context)
        wait_for(lambda: state(seventh)["phase"] == "full", 20, what="room-full")
        assert seventh.locator("#message").is_visible()
        assert "full" in seventh.locator("#message-title").inner_text().lower()
        assert "6" in seventh.locator("#message-text").inner_text()
        assert seventh.evaluate("() => window.meshcall.peers().size") == 0
        assert seventh.locator('.tile:not([data-self="true"])').count() == 0
        assert not seventh.locator("#call").is_visible()
        print(f"\nsix people: full mesh (30 streams decoding) {mesh:.2f}s after opening the first page")
    finally:
        context.close()


def test_without_a_camera_a_person_joins_with_audio_only(server, browser, open_page):
    a = open_page(room_url(server.url, "nocam", "Ada"))
    ctx = browser.new_context(ignore_https_errors=True)
    # As if the camera permission were refused (the fake-UI flag grants everything).
    ctx.add_init_script("""(() => {
      const md = navigator.mediaDevices, real = md.getUserMedia.bind(md);
      md.getUserMedia = (c) => (c && c.video)
        ? Promise.reject(new DOMException('Permission denied', 'NotAllowedError')) : real(c);
    })();""")
    try:
        b = open_page(room_url(server.url, "nocam", "Grace Hopper"), context=ctx)
        ida, idb = joined_id(a), joined_id(b)
        wait_for(lambda: decoding_from(b, {ida}), 20, what="b decoding a")
        wait_for(lambda: stats(a).get(idb, {}).get("audioPacketsReceived", 0) > 0, 20, what="a hearing b")
        assert "audio only" in b.locator("#notice").inner_text()
        assert b.locator("#ctl-cam").is_disabled()
        assert b.locator("#ctl-cam").get_attribute("aria-label") == "Camera not available"
        tile = a.locator(f'.tile[data-peer-id="{idb}"]')
        assert tile.get_attribute("data-video") == "false"
        assert tile.locator(".avatar").is_visible() and tile.locator(".avatar").inner_text() == "GH"
        b.locator("body").press("m")  # the microphone still toggles
        wait_for(lambda: tile.get_attribute("data-audio") == "false", 5, what="mic-off")
    finally:
        ctx.close()


UFRAG_JS = "(id) => /a=ice-ufrag:(\\S+)/.exec(window.meshcall.peers().get(id).remoteDescription.sdp)[1]"


def test_renegotiation_keeps_the_connection_on_the_other_side(server, open_page):
    a, b, ida, idb = pair(server, open_page, "renegotiate")
    b.evaluate("(id) => { window.__pc = window.meshcall.peers().get(id); }", ida)
    b.evaluate("(id) => { document.querySelector(`.tile[data-peer-id='${id}']`).dataset.mark = 'kept'; }", ida)
    before = b.evaluate(UFRAG_JS, ida)
    # An ICE restart is a new offer on the same connection (same conn): the answering
    # page must apply it in place, not take it for a fresh connection.
    a.evaluate("(id) => window.meshcall.peers().get(id).restartIce()", idb)
    wait_for(lambda: b.evaluate(UFRAG_JS, ida) != before, 10, what="the new offer to reach the other page")
    wait_for(lambda: a.evaluate("(id) => window.meshcall.peers().get(id).signalingState", idb) == "stable", 10,
             what="the offer to be answered")
    assert b.evaluate("(id) => window.meshcall.peers().get(id) === window.__pc", ida)
    assert b.locator(f'.tile[data-peer-id="{ida}"][data-mark="kept"]').count() == 1
    assert state(a)["rebuilds"] == 0 and state(b)["rebuilds"] == 0
    frames_rising(b, ida)
    frames_rising(a, idb)
