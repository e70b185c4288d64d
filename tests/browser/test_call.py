"""The meeting page in a real Chromium against a real meshcall: the mesh, the grid, the controls."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from browser.meet import decoding_from, frames_rising, joined_id, room_url, state, stats, wait_for

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
