"""The pages at phone and desktop sizes: nothing overflows, every control is on screen."""

from __future__ import annotations

from pathlib import Path

import pytest

from browser.meet import decoding_from, joined_id, room_url, state, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.netns]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

LAYOUT_JS = """(selectors) => {
  const doc = document.documentElement;
  const vw = window.innerWidth, vh = window.innerHeight;
  const out = {scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth,
               bodyScrollWidth: document.body.scrollWidth, scrollHeight: doc.scrollHeight, vh, problems: []};
  for (const sel of selectors) {
    const els = document.querySelectorAll(sel);
    if (!els.length) out.problems.push(sel + ': missing');
    for (const el of els) {
      const r = el.getBoundingClientRect();
      const st = getComputedStyle(el);
      if (r.width < 1 || r.height < 1 || st.visibility === 'hidden' || st.display === 'none')
        out.problems.push(sel + ': not visible');
      else if (r.left < 0 || r.top < 0 || r.right > vw + 0.5 || r.bottom > vh + 0.5)
        out.problems.push(`${sel}: outside the viewport ${JSON.stringify(r)}`);
      const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
      if (sel.startsWith('#ctl') && !(hit && (hit === el || el.contains(hit))))
        out.problems.push(sel + ': covered');
    }
  }
  return out;
}"""

CONTROLS = ["#ctl-mic", "#ctl-cam", "#ctl-invite", "#ctl-leave"]


def check_layout(page, selectors, shot: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / shot))
    r = page.evaluate(LAYOUT_JS, selectors)
    assert r["scrollWidth"] <= r["clientWidth"], r
    assert r["bodyScrollWidth"] <= r["clientWidth"], r
    assert not r["problems"], r["problems"]


@pytest.mark.parametrize("size", [(360, 640), (1920, 1080)], ids=["phone", "desktop"])
def test_pages_fit_phone_and_desktop(server, open_page, size):
    w, h = size
    viewport = {"width": w, "height": h}
    tag = f"{w}x{h}"

    # Start page: type a name, create a room; the room page then asks before joining.
    page = open_page(server.url + "/", viewport=viewport)
    check_layout(page, ["#name", "#create", "#room"], f"landing-{tag}.png")
    page.fill("#name", "Ada Lovelace")
    page.click("#create")
    page.wait_for_url("**/r/*")
    room = page.url.rsplit("/", 1)[1]
    assert page.locator("#prejoin").is_visible()
    assert page.locator("#prejoin-name").input_value() == "Ada Lovelace"  # remembered
    wait_for(lambda: page.evaluate("() => document.getElementById('preview').videoWidth > 0"), 10,
             what="camera preview")
    check_layout(page, ["#prejoin-join", "#prejoin-mic", "#prejoin-cam", "#preview"], f"prejoin-{tag}.png")
    assert state(page)["phase"] == "prejoin"  # nothing joined before the click
    page.click("#prejoin-join")
    me = joined_id(page)

    others = [open_page(room_url(server.url, room, n)) for n in ("Grace Hopper", "Alan")]
    ids = {joined_id(o) for o in others}
    wait_for(lambda: decoding_from(page, ids), 20, what="video from the others")
    wait_for(lambda: page.locator('.tile[data-state="connected"]').count() == 3, 10, what="three tiles")
    check_layout(page, CONTROLS + [".tile"], f"call-{tag}.png")
    assert page.locator(".tile").count() == 3

    page.click("#ctl-invite")
    dialog = page.locator("#invite")
    assert dialog.is_visible()
    assert page.locator("#invite-link").input_value().endswith(f"/r/{room}")
    wait_for(lambda: page.evaluate("() => document.getElementById('invite-qr').naturalWidth > 0"), 5,
             what="the QR code")
    check_layout(page, ["#invite-qr", "#invite-copy", "#invite-link"], f"invite-{tag}.png")
    page.keyboard.press("Escape")
    wait_for(lambda: not dialog.is_visible(), 5, what="Escape to close the invite")
    assert state(page)["id"] == me
