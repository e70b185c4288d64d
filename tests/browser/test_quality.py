"""Mesh-aware sending in a real Chromium: each receiver's view caps what is sent to it,
and a tile nobody sees costs its sender no encoding."""

from __future__ import annotations

import pytest

from browser.meet import joined_id, room_url, stalled, rising, stats, wait_for, decoding_from

pytestmark = [pytest.mark.browser, pytest.mark.netns]


def test_a_receiver_that_shows_a_sender_small_gets_smaller_frames_than_one_that_shows_it_large(
        server, open_page):
    # The sender's camera is 640x480; a room of three sends at most 360 lines.
    a = open_page(room_url(server.url, "views", "Ada", lowres=False))
    big = open_page(room_url(server.url, "views", "Big"), viewport={"width": 1280, "height": 720})
    small = open_page(room_url(server.url, "views", "Small"), viewport={"width": 360, "height": 300})
    ida, idb, ids = joined_id(a), joined_id(big), joined_id(small)
    wait_for(lambda: decoding_from(big, {ida, ids}) and decoding_from(small, {ida, idb})
             and decoding_from(a, {idb, ids}), 30, what="a room of three")

    def widths() -> tuple[int, int]:
        return stats(big)[ida]["inWidth"], stats(small)[ida]["inWidth"]

    wait_for(lambda: (w := widths())[1] and w[0] > w[1], 30, what="the small view to get smaller frames")
    large_w, small_w = widths()
    assert large_w <= 480, large_w  # the room-size step (360 lines of a 4:3 camera)
    views = a.evaluate("() => window.meshcall.quality().views")
    assert views[idb]["height"] > views[ids]["height"] > 0, views
    out = stats(a)
    assert out[ids]["outWidth"] < out[idb]["outWidth"], out
    print(f"\nviews: {views}; frame width {large_w} shown large, {small_w} shown small")

    # The small page hides Ada's tile: Ada stops encoding for it, and only for it.
    small.evaluate("(id) => { document.querySelector(`.tile[data-peer-id='${id}']`).hidden = true; }", ida)
    wait_for(lambda: stalled(a, ids, "framesEncoded", 1.5), 20, what="no encoding for a hidden tile")
    wait_for(lambda: rising(a, idb, "framesEncoded"), 10, what="still encoding for the page that shows Ada")
    assert a.evaluate("() => window.meshcall.quality().applied")[ids]["active"] is False
    small.evaluate("(id) => { document.querySelector(`.tile[data-peer-id='${id}']`).hidden = false; }", ida)
    wait_for(lambda: rising(a, ids, "framesEncoded"), 20, what="encoding again once shown")


def test_without_adaptation_every_connection_gets_the_full_camera(server, open_page):
    """The bench's baseline (?adapt=0) really is today's sending: full frames, no view."""
    a = open_page(room_url(server.url, "noadapt", "Ada", lowres=False) + "&adapt=0")
    b = open_page(room_url(server.url, "noadapt", "Grace"), viewport={"width": 360, "height": 300})
    c = open_page(room_url(server.url, "noadapt", "Linus"))
    ida, idb, idc = joined_id(a), joined_id(b), joined_id(c)
    wait_for(lambda: decoding_from(b, {ida}) and decoding_from(c, {ida}), 30, what="a room of three")
    wait_for(lambda: stats(a)[idb]["outWidth"] == 640, 20, what="full frames to the small view")
    assert a.evaluate("() => window.meshcall.quality()") == {"enabled": False, "applied": {}, "reasons": {},
                                                              "views": {}}
