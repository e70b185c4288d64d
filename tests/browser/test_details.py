"""Connection details in a real Chromium: the view shows what getStats reports."""

from __future__ import annotations

import pytest

from browser.meet import pair, stats, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.netns]


def test_connection_details_show_the_candidate_types_getstats_reports(server, open_page):
    a, b, ida, idb = pair(server, open_page, "details")
    dialog = a.locator("#details")
    assert not dialog.is_visible()
    a.locator("body").press("s")
    assert dialog.is_visible()
    row = dialog.locator(f'tr[data-peer-id="{idb}"]')
    reported = stats(a)[idb]["pair"]
    assert reported, stats(a)
    expected = f'{reported["local"]} ↔ {reported["remote"]} · {reported["protocol"].upper()}'
    wait_for(lambda: row.locator('[data-field="path"]').inner_text() == expected, 10,
             what=f"the path {expected!r} in the view")
    assert row.locator('[data-field="name"]').inner_text() == "Grace"
    wait_for(lambda: row.locator('[data-field="rtt"]').inner_text().endswith(" ms"), 10, what="a round trip")
    wait_for(lambda: "×" in row.locator('[data-field="video-in"]').inner_text(), 10, what="frames in")
    assert "p ·" in row.locator('[data-field="quality"]').inner_text()
    # Refreshed while open: the rates change from one poll to the next.
    rate = row.locator('[data-field="rate"]').inner_text()
    wait_for(lambda: row.locator('[data-field="rate"]').inner_text() != rate, 10, what="a refresh")
    assert a.locator(".poor-badge").count() == 0  # a loopback call is not a poor one
    a.locator("#ctl-details").click()
    assert not dialog.is_visible()
    a.locator("#ctl-details").click()
    assert dialog.is_visible()
    assert a.locator("#ctl-details").inner_text() == "Connection details"
