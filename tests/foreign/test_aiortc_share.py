"""A screen share from a page, next to a client that knows nothing of shares (aiortc): the
extra m-lines are negotiated on the same connection and ignored, and the camera and
microphone flow on as before, also when the share ends."""

from __future__ import annotations

import pytest

from browser.meet import frames_rising, wait_for
from foreign.test_aiortc_peer import aiortc_frames_rising, page_and_aiortc, page_pc, keep_connection, same_connection

pytestmark = [pytest.mark.browser, pytest.mark.netns]


def test_aiortc_ignores_a_pages_share_and_keeps_its_media(server, open_page, aiortc_peer):
    page, page_id, py = page_and_aiortc(server, open_page, aiortc_peer, "foreign-share")
    keep_connection(page, py.id)
    page.click("#ctl-share")
    wait_for(lambda: (pc := page_pc(page, py.id)) and pc["signaling"] == "stable" and len(pc["transceivers"]) >= 3
             and all(t["current"] is not None for t in pc["transceivers"]), 20,
             what="the share's m-lines negotiated with aiortc")
    share = page_pc(page, py.id)["transceivers"][2:]
    assert [t["kind"] for t in share] == ["video", "audio"], share
    # aiortc answered them receive-only or not at all: either way nothing comes back on them.
    assert all(t["current"] in ("sendonly", "inactive") for t in share), share
    assert same_connection(page, py.id)
    assert py.link(page_id).signaling_state == "stable"
    aiortc_frames_rising(py, page_id)
    frames_rising(page, py.id)

    page.click("#ctl-share")
    wait_for(lambda: (kept := page_pc(page, py.id)["transceivers"][2:]) and all(t["current"] == "inactive" for t in kept)
             and page_pc(page, py.id)["signaling"] == "stable", 20, what="the share's m-lines inactive")
    assert same_connection(page, py.id)
    aiortc_frames_rising(py, page_id)
    frames_rising(page, py.id)
