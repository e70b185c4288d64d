"""Presenting in a real Chromium: a screen share reaches people and a room display, the
presenter layout comes and goes by itself, the room display stays receive-only and
clean, the active speaker is highlighted, and people in the display's room start muted."""

from __future__ import annotations

import math
import struct
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

import pytest

from browser.meet import frames_rising, joined_id, room_url, rising, stalled, state, stats, wait_for
from helpers.browser import CHROMIUM, CHROMIUM_ARGS
from helpers.netns import private_lan
from helpers.procs import Meshcall

pytestmark = [pytest.mark.browser, pytest.mark.netns]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# Per remote peer: how many inbound video streams decode, and what we send.
STREAMS_JS = """async () => {
  const out = {};
  for (const [id, pc] of window.meshcall.peers()) {
    const r = {videoDecoding: 0, framesDecoded: [], bytesSent: 0};
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) {
        r.videoDecoding += 1; r.framesDecoded.push(s.framesDecoded);
      }
      if (s.type === 'outbound-rtp') r.bytesSent += s.bytesSent || 0;
    });
    out[id] = r;
  }
  return out;
}"""

# What the page sends its share with, per peer connection.
SHARE_SENDERS_JS = """() => {
  const out = {};
  for (const [id, pc] of window.meshcall.peers()) {
    out[id] = pc.getTransceivers()
      .filter((t) => t.sender.track && t.sender.track.kind === 'video' && t.sender.track.contentHint === 'detail')
      .map((t) => ({direction: t.direction, label: t.sender.track.label,
                    priority: (t.sender.getParameters().encodings[0] || {}).priority,
                    networkPriority: (t.sender.getParameters().encodings[0] || {}).networkPriority}));
  }
  return out;
}"""

VISIBLE_CONTROLS_JS = """() => [...document.querySelectorAll('button, a, input, dialog[open]')]
  .filter((el) => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
                    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden'; })
  .map((el) => el.id || el.textContent)"""

# Counts getUserMedia calls from the very first script on.
COUNT_GUM = """(() => {
  window.__gum = 0;
  const md = navigator.mediaDevices;
  const real = md.getUserMedia.bind(md);
  md.getUserMedia = (c) => { window.__gum += 1; return real(c); };
})();"""


def streams(page: Any) -> dict[str, dict[str, Any]]:
    return page.evaluate(STREAMS_JS)


def layout(page: Any) -> str:
    return page.evaluate("() => document.getElementById('grid').dataset.layout || 'grid'")


def decodes_two_from(page: Any, peer: str) -> bool:
    return streams(page).get(peer, {}).get("videoDecoding", 0) >= 2


def display_url(base: str, room: str, extra: str = "") -> str:
    return f"{base}/r/{room}?display=1{extra}"


def test_a_share_reaches_a_person_and_a_room_display_and_ends_on_both(server, browser, open_page):
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 720})
    ctx.add_init_script(COUNT_GUM)
    try:
        display = open_page(display_url(server.url, "share"), context=ctx)
        a = open_page(room_url(server.url, "share", "Ada"))
        b = open_page(room_url(server.url, "share", "Grace"))
        ida, idb, idd = joined_id(a), joined_id(b), joined_id(display)
        for page, other in ((b, ida), (display, ida), (display, idb)):
            wait_for(lambda: streams(page).get(other, {}).get("videoDecoding", 0) == 1, 20, what="camera video")
        assert layout(display) == "grid" and layout(b) == "grid"

        a.click("#ctl-share")
        wait_for(lambda: decodes_two_from(b, ida) and decodes_two_from(display, ida), 20,
                 what="camera and screen from the sharer on both")
        senders = a.evaluate(SHARE_SENDERS_JS)
        for peer in (idb, idd):
            assert len(senders[peer]) == 1, senders
            assert senders[peer][0]["direction"] == "sendonly"
            assert senders[peer][0]["priority"] == "high" and senders[peer][0]["networkPriority"] == "high"
        assert a.locator("#ctl-share").get_attribute("aria-pressed") == "true"
        for page in (b, display):
            share_tile = page.locator(f'.tile[data-peer-id="screen:{ida}"]')
            wait_for(lambda: share_tile.count() == 1 and share_tile.get_attribute("data-main") == "true", 10,
                     what="the share shown large")
            assert share_tile.locator(".name").inner_text() == "Ada"
            assert page.locator(f'.tile[data-peer-id="{ida}"] .presenting').inner_text() == "Presenting"
            wait_for(lambda: page.evaluate(
                "(id) => document.querySelector(`.tile[data-peer-id='${id}'] video`).videoWidth", f"screen:{ida}")
                == 1280, 10, what="the screen's picture in its tile")
        assert layout(display) == "presenter" and layout(b) == "presenter"

        # Anyone may go back to the grid; a display follows the room by itself.
        b.click("#ctl-layout")
        assert layout(b) == "grid"
        b.click("#ctl-layout")
        assert layout(b) == "presenter"

        a.click("#ctl-share")  # pressing it again ends the share everywhere
        for page in (b, display):
            wait_for(lambda: page.locator('.tile[data-share="true"]').count() == 0, 10, what="the share tile to go")
            wait_for(lambda: layout(page) == "grid", 10, what="the grid back")
            assert page.locator(f'.tile[data-peer-id="{ida}"] .presenting').count() == 0
        assert a.evaluate(SHARE_SENDERS_JS)[idb] == []  # the share's track is stopped and gone
        # Kept, inactive, for the next share (share.js): there must be some to look at.
        wait_for(lambda: (kept := a.evaluate(
            "(id) => window.meshcall.peers().get(id).getTransceivers().map(t => ({direction: t.currentDirection}))"
            ".slice(2)", idb)) and all(t["direction"] == "inactive" for t in kept), 10,
            what="the share's transceivers to go inactive")
        for page in (b, display):
            frames_rising(page, ida)  # the camera goes on

        # The display: no camera or microphone asked for, nothing sent, nothing to press.
        assert display.evaluate("() => window.__gum") == 0
        assert display.evaluate("() => window.meshcall.localTracks().length") == 0
        assert all(s["bytesSent"] == 0 for s in streams(display).values()), streams(display)
        # Chromium refuses sound without a gesture to a page that captures nothing: the
        # picture plays muted and one large notice asks for a tap (kiosk flags avoid it).
        assert display.evaluate(VISIBLE_CONTROLS_JS) == ["unmute-audio"]
        assert display.locator("#unmute-audio").inner_text() == "Tap for sound"
        video = f".tile[data-peer-id='{ida}'] video"
        assert display.evaluate("(sel) => [document.querySelector(sel).muted, document.querySelector(sel).paused]",
                                video) == [True, False]
        display.click("#unmute-audio")
        assert display.evaluate("(sel) => document.querySelector(sel).muted", video) is False
        assert display.evaluate(VISIBLE_CONTROLS_JS) == []
        assert display.locator('.tile[data-self="true"]').count() == 0
        assert display.evaluate("() => getComputedStyle(document.body).cursor") == "none"
        assert display.locator(f'.tile[data-peer-id="{ida}"] .name').inner_text() == "Ada"
        assert state(display)["phase"] == "joined"
    finally:
        ctx.close()


def test_the_browsers_stop_sharing_ends_the_share(server, open_page):
    a = open_page(room_url(server.url, "stop", "Ada"))
    b = open_page(room_url(server.url, "stop", "Grace"))
    ida, idb = joined_id(a), joined_id(b)
    wait_for(lambda: streams(b).get(ida, {}).get("videoDecoding", 0) == 1, 20, what="camera video")
    a.locator("body").press("p")  # the keyboard shortcut
    wait_for(lambda: decodes_two_from(b, ida), 20, what="the screen")
    # As when the person presses the browser's own "Stop sharing": the track ends.
    a.evaluate("""() => { for (const [, pc] of window.meshcall.peers()) for (const s of pc.getSenders())
                    if (s.track && s.track.contentHint === 'detail') { s.track.stop();
                      s.track.dispatchEvent(new Event('ended')); } }""")
    wait_for(lambda: b.locator('.tile[data-share="true"]').count() == 0 and layout(b) == "grid", 10,
             what="the share to end on the other page")
    assert a.locator("#ctl-share").get_attribute("aria-pressed") == "false"


def qr_text(png: Path) -> str:
    res = subprocess.run(["zbarimg", "--raw", "-q", str(png)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


# A Screen Wake Lock that counts requests and can be released as when the page is hidden
# (headless Chromium has no screen to keep awake).
FAKE_WAKE_LOCK = """(() => {
  window.__locks = [];
  Object.defineProperty(navigator, 'wakeLock', {value: {request: async (type) => {
    const lock = {type, released: false, release() { this.released = true; }};
    window.__locks.push(lock);
    return lock;
  }}});
})();"""


def test_the_idle_display_shows_the_room_and_a_qr_code_of_its_link(server, browser, open_page):
    ARTIFACTS.mkdir(exist_ok=True)
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1920, "height": 1080})
    try:
        ctx.add_init_script(FAKE_WAKE_LOCK)
        display = open_page(display_url(server.url, "Lobby-7"), context=ctx)
        joined_id(display)
        # The screen is kept awake, and the lock asked for again after the page was hidden.
        wait_for(lambda: display.evaluate("() => window.__locks.map((l) => l.type)") == ["screen"], 5,
                 what="a screen wake lock")
        display.evaluate("() => { window.__locks[0].released = true; document.dispatchEvent(new Event('visibilitychange')); }")
        wait_for(lambda: display.evaluate("() => window.__locks.length") == 2, 5, what="the wake lock asked again")
        idle = display.locator("#idle")
        assert idle.is_visible()
        wait_for(lambda: display.evaluate("() => document.getElementById('idle-qr').naturalWidth > 0"), 10,
                 what="the QR code")
        assert display.locator(".idle-room").inner_text() == "Lobby-7"
        assert display.locator("#idle-code").inner_text() == "Lobby-7"
        assert display.locator("#idle-link").inner_text() == f"{server.url}/r/Lobby-7"
        display.screenshot(path=str(ARTIFACTS / "display-idle-1920x1080.png"))
        with tempfile.TemporaryDirectory() as tmp:
            shot = Path(tmp) / "qr.png"
            display.locator("#idle-qr").screenshot(path=str(shot))
            assert qr_text(shot) == f"{server.url}/r/Lobby-7?inroom=1"
        assert display.evaluate(VISIBLE_CONTROLS_JS) == []  # alone: nothing plays, nothing to tap
        doc = display.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        assert doc == [1920, 1080]

        # Someone joins: the idle screen gives way to their tile; they leave: it is back.
        a = open_page(room_url(server.url, "Lobby-7", "Ada"))
        ida = joined_id(a)
        wait_for(lambda: not idle.is_visible(), 10, what="the idle screen to go")
        wait_for(lambda: streams(display).get(ida, {}).get("videoDecoding", 0) == 1, 20, what="video on the display")
        a.close()
        wait_for(lambda: idle.is_visible(), 10, what="the idle screen back")
    finally:
        ctx.close()


def test_a_display_turned_away_by_a_full_room_joins_when_a_place_is_free(open_page):
    with Meshcall(["--max-peers", "1"]) as mc:
        a = open_page(room_url(mc.url, "small", "Ada"))
        joined_id(a)
        display = open_page(display_url(mc.url, "small"))
        wait_for(lambda: "full" in display.locator(".idle-status").inner_text(), 20, what="the display told the room is full")
        assert display.locator("#idle").is_visible() and not display.locator("#message").is_visible()
        assert display.evaluate(VISIBLE_CONTROLS_JS) == []
        a.close()
        # It tries again by itself (every RETRY_FULL_MS) and takes the free place.
        def phase() -> str | None:
            try:
                return display.evaluate("() => window.meshcall ? window.meshcall.state().phase : null")
            except Exception:  # the page is between two loads
                return None

        wait_for(lambda: phase() == "joined", 40, what="the display to join")
        # Alone now: the idle screen, without the full-room line.
        wait_for(lambda: display.locator(".idle-status").inner_text() == "", 10, what="the full-room line to go")
        assert display.locator("#idle").is_visible()


TILE_BOXES_JS = """() => [...document.querySelectorAll('.tile')].map((t) => {
  const r = t.getBoundingClientRect(); return {id: t.dataset.peerId, main: t.dataset.main === 'true',
  x: r.left, y: r.top, w: r.width, h: r.height}; })"""


def check_presenter_layout(page: Any, tiles: int, shot: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / shot))
    vw, vh = page.evaluate("() => [innerWidth, innerHeight]")
    doc = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    assert doc == [vw, vh], doc
    boxes = page.evaluate(TILE_BOXES_JS)
    assert len(boxes) == tiles, boxes
    mains = [b for b in boxes if b["main"]]
    assert len(mains) == 1 and mains[0]["id"].startswith("screen:"), boxes
    for b in boxes:
        assert b["w"] >= 40 and b["h"] >= 30, b
        assert b["x"] >= 0 and b["y"] >= 0 and b["x"] + b["w"] <= vw + 0.5 and b["y"] + b["h"] <= vh + 0.5, b
    for i, p in enumerate(boxes):
        for q in boxes[i + 1:]:
            overlap = min(p["x"] + p["w"], q["x"] + q["w"]) - max(p["x"], q["x"]) > 0.5 and \
                min(p["y"] + p["h"], q["y"] + q["h"]) - max(p["y"], q["y"]) > 0.5
            assert not overlap, (p, q)
    # The share is the largest tile.
    assert all(mains[0]["w"] * mains[0]["h"] > b["w"] * b["h"] for b in boxes if not b["main"])
    controls = page.evaluate("""() => [...document.querySelectorAll('#controls button:not([hidden])')]
      .map((b) => b.getBoundingClientRect()).every((r) => r.bottom <= innerHeight + 0.5 && r.right <= innerWidth + 0.5)""")
    assert controls


def test_presenter_layout_fits_a_phone_and_a_desktop(server, browser, open_page):
    """Four people and a share in real pages (layout.js is checked for 1-6 people at both sizes
    in tests/js; six meshed pages plus a share are more than two shared cores carry reliably)."""
    def opened(name: str, **kw: Any) -> Any:
        # Six pages on two shared cores: wait for the call, not for every byte of the page.
        page = open_page(**kw)
        page.goto(room_url(server.url, "fit", name), wait_until="commit")
        return page

    desk = opened("Ada Lovelace", viewport={"width": 1920, "height": 1080})
    phone = opened("Grace", viewport={"width": 360, "height": 640})
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 320, "height": 240})
    try:
        others = [opened(f"P{i}", context=ctx) for i in range(2)]
        for p in [desk, phone] + others:
            p.wait_for_function("() => window.meshcall", timeout=60000)
        try:
            ids = [joined_id(p, 60) for p in [desk, phone] + others]
        except AssertionError:
            print("states:", [state(p) for p in [desk, phone] + others])
            raise
        connected = """() => [...document.querySelectorAll('.tile')].map((t) => t.dataset.state)"""
        everyone = [desk, phone] + others
        try:
            wait_for(lambda: all(p.evaluate(connected) == ["connected"] * 4 for p in everyone), 60, 0.5,
                     what="four people connected everywhere")
        except AssertionError:
            print([p.evaluate(connected) for p in everyone], [state(p) for p in everyone])
            raise
        desk.locator("body").press("p")  # a key press needs no layout to settle on a loaded machine
        # (Ids are read again: on a machine this loaded a page may have had to join afresh.)
        try:
            wait_for(lambda: decodes_two_from(phone, state(desk)["id"]), 30, 0.5, what="the share on the phone")
        except AssertionError:
            desk_id, phone_id = state(desk)["id"], state(phone)["id"]
            print("desk:", state(desk), "\nphone:", state(phone), stats(phone).get(desk_id))
            print("the phone's log of the desk:", *phone.evaluate("(id) => window.meshcall.trace(id)", desk_id),
                  "the desk's log of the phone:", *desk.evaluate("(id) => window.meshcall.trace(id)", phone_id),
                  sep="\n  ")
            print("the server's log, the end:", *server.output().splitlines()[-80:], sep="\n")
            raise
        wait_for(lambda: layout(phone) == "presenter" and layout(desk) == "presenter", 10, what="presenter layout")
        check_presenter_layout(phone, 5, "presenter-360x640.png")
        check_presenter_layout(desk, 5, "presenter-1920x1080.png")
        # Pinning a person shows them large instead; unpinning returns to the share.
        # The pin is pressed as an event on its button, not at screen coordinates: on a loaded
        # machine the strip may still move under a pointer click (the button shows on hover).
        person = phone.locator(".tile", has=phone.locator(".name", has_text="P1"))
        person.locator(".tile-pin").dispatch_event("click")
        wait_for(lambda: person.get_attribute("data-main") == "true", 10, 0.2, what="the pinned person large")
        person.locator(".tile-pin").dispatch_event("click")
        wait_for(lambda: phone.locator('.tile[data-share="true"]').get_attribute("data-main") == "true", 10, 0.2,
                 what="the share large again")
        # No page sent the server anything it had to refuse (a `view` addressed to a share
        # tile once did, and every resume sent it again).
        assert "protocol error" not in server.output(), server.output()
    finally:
        ctx.close()


def write_wav(path: Path, tone: bool, seconds: float = 2.0, rate: int = 48000) -> None:
    """A 440 Hz tone at half scale, or digital silence: mono, 16 bit."""
    frames = bytearray()
    for i in range(int(seconds * rate)):
        v = int(16000 * math.sin(2 * math.pi * 440 * i / rate)) if tone else 0
        frames += struct.pack("<h", v)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))


def test_the_person_speaking_is_highlighted_on_the_other_pages(server, browser):
    errors: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        tone, silence = Path(tmp) / "tone.wav", Path(tmp) / "silence.wav"
        write_wav(tone, True)
        write_wav(silence, False)
        # One fake microphone file per browser process: a browser that speaks, one that is silent.
        launched = [browser.browser_type.launch(executable_path=CHROMIUM, headless=True,
                                                args=CHROMIUM_ARGS + [f"--use-file-for-fake-audio-capture={f}"])
                    for f in (tone, silence)]
        try:
            loud, quiet = launched
            pages = []
            for b, name in ((loud, "Speaker"), (quiet, "Listener"), (quiet, "Other")):
                page = b.new_context(ignore_https_errors=True).new_page()
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(room_url(server.url, "speaking", name))
                pages.append(page)
            speaker, listener, other = pages
            ids = [joined_id(p) for p in pages]
            for page in (listener, other):
                tile = page.locator(f'.tile[data-peer-id="{ids[0]}"]')
                wait_for(lambda: tile.get_attribute("data-speaking") == "true", 30, what="the speaker highlighted")
                assert page.locator('.tile[data-speaking="true"]').count() == 1
            # The speaker sees itself highlighted, and nobody else.
            wait_for(lambda: speaker.locator('.tile[data-self="true"]').get_attribute("data-speaking") == "true",
                     20, what="the speaker's own tile highlighted")
            assert speaker.locator('.tile[data-speaking="true"]').count() == 1
        finally:
            for b in launched:
                b.close()
    assert not errors, errors


def test_joining_through_the_display_code_starts_muted(server, open_page):
    a = open_page(room_url(server.url, "inroom", "Ada"))
    b = open_page(room_url(server.url, "inroom", "Grace") + "&inroom=1")
    ida, idb = joined_id(a), joined_id(b)
    wait_for(lambda: streams(b).get(ida, {}).get("videoDecoding", 0) == 1
             and stats(a).get(idb, {}).get("framesDecoded", 0) > 0, 20, what="video both ways")
    assert "microphone and speaker start off" in b.locator("#notice").inner_text()
    assert b.locator("#ctl-mic").get_attribute("aria-pressed") == "false"
    assert b.locator("#ctl-speaker").get_attribute("aria-pressed") == "false"
    wait_for(lambda: b.evaluate("(id) => document.querySelector(`.tile[data-peer-id='${id}'] video`).muted", ida), 5,
             what="the others' sound muted")
    assert stats(b)[ida]["audioPacketsSent"] == 0
    wait_for(lambda: stalled(b, ida, "audioPacketsSent"), 10, what="no audio sent")
    assert a.locator(f'.tile[data-peer-id="{idb}"]').get_attribute("data-audio") == "false"

    b.click("#ctl-mic")
    b.click("#ctl-speaker")
    wait_for(lambda: rising(b, ida, "audioPacketsSent"), 10, what="audio sent after unmuting")
    assert not b.evaluate("(id) => document.querySelector(`.tile[data-peer-id='${id}'] video`).muted", ida)
    wait_for(lambda: a.locator(f'.tile[data-peer-id="{idb}"]').get_attribute("data-audio") == "true", 5,
             what="the microphone shown on")


def test_sharing_works_through_the_relay_only(open_page):
    with private_lan() as (appliance_ip, _):
        with Meshcall(["--relay-only"], turn=True, host=appliance_ip) as mc:
            mc.wait_for("TURN: self-check: relay works", 20)
            a = open_page(room_url(mc.url, "relayed-share", "Ada"))
            b = open_page(room_url(mc.url, "relayed-share", "Grace"))
            ida, idb = joined_id(a), joined_id(b)
            wait_for(lambda: streams(b).get(ida, {}).get("videoDecoding", 0) == 1, 30, what="relayed camera video")
            a.click("#ctl-share")
            wait_for(lambda: decodes_two_from(b, ida), 30, what="camera and screen through the relay")
            assert stats(b)[ida]["pair"]["local"] == "relay" and stats(b)[ida]["pair"]["remote"] == "relay"
            share = b.locator(f'.tile[data-peer-id="screen:{ida}"]')
            assert share.get_attribute("data-main") == "true"
            # Double-click puts a tile in full screen.
            share.dblclick()
            wait_for(lambda: b.evaluate("() => document.fullscreenElement && document.fullscreenElement.dataset.peerId")
                     == f"screen:{ida}", 5, what="the share in full screen")


def test_without_screen_capture_there_is_no_share_button_and_the_page_says_why(server, browser, open_page):
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 360, "height": 640})
    try:
        ctx.add_init_script("delete MediaDevices.prototype.getDisplayMedia;")  # as on a phone
        page = open_page(room_url(server.url, "phone", "Ada"), context=ctx)
        joined_id(page)
        assert not page.locator("#ctl-share").is_visible()
        page.locator("body").press("p")
        wait_for(lambda: "cannot share a screen" in page.locator("#notice").inner_text(), 5, what="the reason")
        page.click("#ctl-invite")
        assert "cannot share its screen" in page.locator("#invite .share-why").inner_text()
    finally:
        ctx.close()
