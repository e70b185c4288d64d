"""Meeting basics in a real Chromium against a real meshcall: chat, device switching,
raise hand, room lock, passcodes and the appliance access code."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from browser.meet import decoding_from, frames_rising, joined_id, pair, rising, room_url, state, stats, wait_for
from helpers.procs import Meshcall

pytestmark = [pytest.mark.browser, pytest.mark.netns]

ACCESS_CODE = "guest-7341"


def chat_texts(page: Any) -> list[str]:
    return page.locator("#chat-log .chat-text").all_inner_texts()


def say(page: Any, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")


def test_chat_both_ways_hostile_text_is_inert_and_a_newcomer_sees_the_history(server, open_page):
    dialogs: list[str] = []
    a, b = open_page(), open_page()
    for page in (a, b):
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(room_url(server.url, "chat", "Ada" if page is a else "Grace"))
    joined_id(a), joined_id(b)
    a.locator("body").press("c")  # the shortcut opens the panel and puts the cursor in the box
    assert a.locator("#chat").is_visible()
    say(a, "hello Grace")
    wait_for(lambda: chat_texts(b) == ["hello Grace"], 10, what="the message on the other page")
    chat_button = b.get_by_role("button", name=re.compile(r"^Chat"))
    assert "1 unread" in (chat_button.get_attribute("aria-label") or "")
    assert b.locator("#chat-log").get_attribute("aria-live") == "polite"
    chat_button.click()
    assert "unread" not in (chat_button.get_attribute("aria-label") or "")
    say(b, "hi Ada")
    wait_for(lambda: chat_texts(a) == ["hello Grace", "hi Ada"], 10, what="the reply")

    hostile = ["<img src=x onerror=\"window.pwned=1;alert(1)\">", "javascript:alert(document.cookie)",
               '<a href="javascript:window.pwned=2">click</a>', "see https://slides.example/deck.pdf."]
    for text in hostile:
        say(a, text)
    wait_for(lambda: chat_texts(b)[2:] == hostile, 10, what="the hostile messages as text")
    for page in (a, b):
        log = page.locator("#chat-log")
        assert log.locator("img").count() == 0 and page.locator("img[src='x']").count() == 0
        links = log.locator("a")
        assert links.count() == 1
        assert links.get_attribute("href") == "https://slides.example/deck.pdf"
        assert links.get_attribute("rel") == "noopener noreferrer" and links.get_attribute("target") == "_blank"
        assert page.evaluate("() => window.pwned") is None
    assert not dialogs

    late = open_page(room_url(server.url, "chat", "Late"))
    joined_id(late)
    late.get_by_role("button", name=re.compile(r"^Chat")).click()
    wait_for(lambda: chat_texts(late) == ["hello Grace", "hi Ada", *hostile], 10, what="the history")
    assert late.locator("#chat-log a").count() == 1


def count_offers(page: Any) -> list[int]:
    """Offers this page sends over signaling, counted from its WebSocket frames; [1]
    counts every signal, to show the counter sees the page's frames at all."""
    offers = [0, 0]

    def sent(payload: Any) -> None:
        try:
            msg = json.loads(payload)
        except (TypeError, ValueError):
            return
        if msg.get("type") != "signal":
            return
        offers[1] += 1
        if (msg.get("description") or {}).get("type") == "offer":
            offers[0] += 1

    page.on("websocket", lambda ws: ws.on("framesent", sent))
    return offers


def local_track_id(page: Any, kind: str) -> str:
    return page.evaluate(f"() => window.meshcall.localTracks().find(t => t.kind === '{kind}').id")


def test_prejoin_pickers_and_meter_then_switching_devices_keeps_the_other_side_decoding_without_an_offer(
        server, open_page):
    a = open_page()
    offers = count_offers(a)
    a.goto(room_url(server.url, "devices", None))
    prejoin = a.locator("#prejoin")
    prejoin.wait_for(state="visible")
    for label in ("Camera", "Microphone"):
        picker = prejoin.get_by_role("combobox", name=label, exact=True)
        wait_for(lambda: picker.locator("option").count() >= 1 and picker.is_enabled(), 10, what=f"{label} picker")
    wait_for(lambda: a.locator("#prejoin-level").evaluate("m => m.value") > 0, 10, what="the microphone meter to move")
    a.get_by_label("Your name").fill("Ada")
    a.get_by_role("button", name="Join", exact=True).click()
    b = open_page(room_url(server.url, "devices", "Grace"))
    ida, idb = joined_id(a), joined_id(b)
    wait_for(lambda: decoding_from(b, {ida}) and decoding_from(a, {idb}), 20, what="media both ways")
    offers_before = offers[0]
    assert offers[1] > 0, "no signaling frame seen: the offer counter is not hooked up"

    for kind, label in (("video", "Camera"), ("audio", "Microphone")):
        old = local_track_id(a, kind)
        a.get_by_role("button", name="Settings").click()
        picker = a.locator("#settings").get_by_role("combobox", name=label, exact=True)
        options = picker.locator("option").evaluate_all("os => os.map(o => o.value)")
        current = picker.input_value()
        other = next((o for o in options if o != current), current)
        # With one fake device, choosing it again still opens a fresh track: the switch is the same.
        picker.select_option(other)
        picker.dispatch_event("change")
        wait_for(lambda: local_track_id(a, kind) != old, 10, what=f"a new {kind} track")
        a.keyboard.press("Escape")
        if kind == "video":
            frames_rising(b, ida)
        else:
            wait_for(lambda: rising(b, ida, "audioPacketsReceived"), 10, what="audio still arriving")
        sent = a.evaluate(f"""async () => {{
            const pc = window.meshcall.peers().values().next().value;
            const s = pc.getSenders().find(s => s.track && s.track.kind === '{kind}');
            return s ? s.track.id : null; }}""")
        assert sent == local_track_id(a, kind)
    # An unplugged camera: its track ends (as the browser ends it), and the page falls
    # back to another camera by itself, says so, and the other side keeps decoding.
    old = local_track_id(a, "video")
    a.evaluate("""() => { const t = window.meshcall.localTracks().find(t => t.kind === 'video');
                          t.stop(); t.dispatchEvent(new Event('ended')); }""")
    wait_for(lambda: local_track_id(a, "video") != old, 10, what="a fallback camera")
    wait_for(lambda: "camera is gone" in a.locator("#notice").inner_text(), 10, what="the fallback notice")
    frames_rising(b, ida)
    assert offers[0] == offers_before, "a device switch must not renegotiate"
    assert state(b)["peers"][ida] == "connected" and stats(b)[ida]["connectionState"] == "connected"
    assert a.evaluate("() => localStorage.getItem('meshcall.devices')")


def test_raised_hands_show_in_order_on_the_other_page(server, open_page):
    a = open_page(room_url(server.url, "hands", "Ada"))
    b = open_page(room_url(server.url, "hands", "Grace"))
    ida, idb = joined_id(a), joined_id(b)
    for page in (a, b):
        page.locator("body").press("m")  # muted: the fake microphone's beeps would lower the hand
    a.get_by_role("button", name="Raise hand").click()
    hand_of_a = b.locator(f'.tile[data-peer-id="{ida}"] .hand')
    wait_for(lambda: hand_of_a.count() == 1 and "1" in hand_of_a.inner_text(), 10, what="Ada's hand on Grace's page")
    assert a.get_by_role("button", name="Raise hand").get_attribute("aria-pressed") == "true"
    b.locator("body").press("h")
    hand_of_b = a.locator(f'.tile[data-peer-id="{idb}"] .hand')
    wait_for(lambda: hand_of_b.count() == 1 and "2" in hand_of_b.inner_text(), 10, what="Grace second in line")
    a.get_by_role("button", name="Raise hand").click()  # Ada lowers hers: Grace is first now
    wait_for(lambda: hand_of_a.count() == 0, 10, what="Ada's hand down")
    wait_for(lambda: "1" in b.locator(f'.tile[data-peer-id="{idb}"] .hand').inner_text(), 10, what="Grace first")
    # Grace speaks (the fake microphone beeps twice a second): after a few seconds her
    # hand lowers itself, on every page.
    b.locator("body").press("m")
    wait_for(lambda: hand_of_b.count() == 0, 15, what="Grace's hand to lower itself")
    assert "you have the floor" in b.locator("#notice").inner_text()
    assert b.get_by_role("button", name="Raise hand").get_attribute("aria-pressed") == "false"


def test_a_locked_room_turns_away_a_third_page(server, open_page):
    a = open_page(room_url(server.url, "locked", "Ada"))
    b = open_page(room_url(server.url, "locked", "Grace"))
    joined_id(a), joined_id(b)
    a.get_by_role("button", name="Lock room").click()
    wait_for(lambda: "locked by Ada" in b.locator("#room-status").inner_text(), 10, what="members see who locked it")
    assert b.get_by_role("button", name="Lock room").get_attribute("aria-pressed") == "true"
    c = open_page(room_url(server.url, "locked", "Late"))
    wait_for(lambda: state(c)["phase"] == "locked", 10, what="the newcomer turned away")
    assert c.locator("#message-title").inner_text() == "This room is locked"
    assert "Ada" in c.locator("#message-text").inner_text()
    assert c.evaluate("() => window.meshcall.peers().size") == 0
    assert a.locator(".tile").count() == 2
    b.get_by_role("button", name="Lock room").click()
    wait_for(lambda: a.locator("#room-status").is_hidden(), 10, what="unlocked")
    d = open_page(room_url(server.url, "locked", "Later"))
    joined_id(d)


def test_a_passcode_link_admits_and_a_wrong_passcode_is_refused(server, open_page):
    a = open_page(room_url(server.url, "secret", "Ada"))
    joined_id(a)
    a.get_by_role("button", name="Invite people").click()
    a.get_by_label("New passcode").fill("4711 blue")
    a.get_by_role("button", name="Set passcode").click()
    with_key = a.get_by_label("Room link with the passcode")
    wait_for(lambda: with_key.is_visible() and with_key.input_value().endswith("#key=4711%20blue"), 10,
             what="the invite link with the passcode")
    assert a.get_by_label("Room link", exact=True).input_value().endswith("/r/secret")
    link = with_key.input_value()
    a.keyboard.press("Escape")

    b = open_page(room_url(server.url, "secret", "Grace") + "#" + link.split("#", 1)[1])
    joined_id(b)

    c = open_page(room_url(server.url, "secret", "Mallory") + "#key=guess")
    prompt = c.get_by_role("dialog", name="This room has a passcode")
    prompt.wait_for(state="visible")
    wait_for(lambda: "not right" in c.locator("#passcode-error").inner_text(), 10, what="wrong passcode refused")
    assert state(c)["phase"] == "connecting" and c.evaluate("() => window.meshcall.peers().size") == 0
    c.get_by_label("Passcode", exact=True).fill("another guess")
    c.get_by_role("button", name="Join").click()
    wait_for(lambda: prompt.is_visible() and "not right" in c.locator("#passcode-error").inner_text(), 10,
             what="a second wrong passcode refused")
    c.get_by_label("Passcode", exact=True).fill("4711 blue")
    c.get_by_role("button", name="Join").click()
    joined_id(c)
    wait_for(lambda: a.locator(".tile").count() == 3, 10, what="three in the room")


@pytest.fixture
def gated() -> Any:
    mc = Meshcall(env={"MESHCALL_ACCESS_CODE": ACCESS_CODE})
    try:
        mc.start()
        yield mc
        mc.stop()
        assert ACCESS_CODE not in mc.output()
        mc.assert_clean()
    except BaseException:
        print(mc.output())
        raise
    finally:
        mc.close()


def test_an_access_code_appliance_admits_only_after_the_code(gated, open_page):
    a = open_page(room_url(gated.url, "guests", "Ada"))
    form = a.get_by_label("Access code")
    form.wait_for(state="visible")
    assert a.locator("#prejoin, #call").count() == 0  # not the meeting page at all
    refused = a.evaluate("""() => new Promise((resolve) => {
        const ws = new WebSocket(`wss://${location.host}/ws`);
        ws.onopen = () => resolve('open'); ws.onerror = () => resolve('refused'); })""")
    assert refused == "refused"
    form.fill("wrong")
    a.get_by_role("button", name="Continue").click()
    wait_for(lambda: "not the access code" in a.locator("#access-error").inner_text(), 10, what="wrong code refused")
    form.fill(ACCESS_CODE)
    a.get_by_role("button", name="Continue").click()
    a.locator("#call").wait_for(state="visible")  # the room page, reloaded with the cookie
    ida = joined_id(a)

    display = open_page(room_url(gated.url, "guests", None) + "&display=1#access=" + ACCESS_CODE)
    display.locator("#call").wait_for(state="visible")
    idd = joined_id(display)
    assert "access=" not in display.url
    wait_for(lambda: display.locator(f'.tile[data-peer-id="{ida}"] .name').inner_text() == "Ada", 10,
             what="the display in the call")
    wait_for(lambda: a.locator(f'.tile[data-peer-id="{idd}"] .name').inner_text() == "Room display", 10,
             what="the display seen by Ada")
