"""An aiortc participant, written from docs/protocol.md alone, in a call with real pages.

The page must work with a peer that is not Chromium: one that cannot roll back, puts all
its candidates in the SDP, and makes a new SDP session id (o=) for every offer."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from browser.meet import decoding_from, frames_rising, joined_id, room_url, state, wait_for
from helpers.aiortc_client import Participant

pytestmark = [pytest.mark.browser, pytest.mark.netns]

CONN_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")


# ------------------------------------------------------------------ page side
def keep_connection(page: Any, peer_id: str) -> None:
    """Hold on to the page's RTCPeerConnection for peer_id, to tell later whether it was replaced."""
    page.evaluate("(id) => { (window.__kept ||= {})[id] = window.meshcall.peers().get(id); }", peer_id)


def same_connection(page: Any, peer_id: str) -> bool:
    return page.evaluate("(id) => !!window.__kept[id] && window.meshcall.peers().get(id) === window.__kept[id]",
                         peer_id)


def page_pc(page: Any, peer_id: str) -> dict[str, Any] | None:
    """signalingState, connectionState and the transceivers of the page's connection to peer_id."""
    return page.evaluate("""(id) => {
      const pc = window.meshcall.peers().get(id);
      if (!pc) return null;
      return {signaling: pc.signalingState, connection: pc.connectionState,
              transceivers: pc.getTransceivers().map((t) => ({mid: t.mid, kind: t.receiver.track.kind,
                direction: t.direction, current: t.currentDirection}))};
    }""", peer_id)


def tile(page: Any, peer_id: str) -> Any:
    return page.locator(f'.tile[data-peer-id="{peer_id}"]')


# ------------------------------------------------------------------ aiortc side
def aiortc_decoding(py: Participant, peer_ids: set[str], min_frames: int = 1) -> bool:
    """Whether the aiortc participant decodes video and receives audio from every listed peer."""
    return all(py.frames_from(pid, "video") >= min_frames and py.frames_from(pid, "audio") > 0 for pid in peer_ids)


def aiortc_frames_rising(py: Participant, peer_id: str, timeout: float = 10) -> int:
    start = py.frames_from(peer_id)
    return wait_for(lambda: (n := py.frames_from(peer_id)) > start + 5 and n, timeout,
                    what=f"aiortc's frames from {peer_id} to rise above {start}")


def media_both_ways(page: Any, page_id: str, py: Participant, timeout: float = 20) -> None:
    wait_for(lambda: decoding_from(page, {py.id}) and aiortc_decoding(py, {page_id}), timeout,
             what="media both ways between the page and aiortc")
    frames_rising(page, py.id)
    aiortc_frames_rising(py, page_id)


def page_and_aiortc(server: Any, open_page: Any, aiortc_peer: Any, room: str) -> tuple[Any, str, Participant]:
    """A page in the room, then aiortc joins and calls it; media flows both ways."""
    page = open_page(room_url(server.url, room, "Ada"))
    page_id = joined_id(page)
    py = aiortc_peer(room)
    py.join()
    media_both_ways(page, page_id, py)
    return page, page_id, py


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("pages", [1, 2])
def test_aiortc_joins_and_media_flows_both_ways(server, open_page, aiortc_peer, pages):
    room = f"foreign-{pages}"
    ps = [open_page(room_url(server.url, room, f"Page {i}")) for i in range(pages)]
    ids = [joined_id(p) for p in ps]
    if pages == 2:
        wait_for(lambda: decoding_from(ps[0], {ids[1]}) and decoding_from(ps[1], {ids[0]}), 20,
                 what="the two pages decoding each other")
    py = aiortc_peer(room)
    welcome = py.join()
    assert sorted(p["id"] for p in welcome["peers"]) == sorted(ids)
    for page, page_id in zip(ps, ids):
        media_both_ways(page, page_id, py)
        assert tile(page, py.id).count() == 1
        # The newcomer's layout: audio, then video, both answered sendrecv.
        link = py.link(page_id)
        assert [(t.kind, t.currentDirection) for t in link.pc.getTransceivers()] == [
            ("audio", "sendrecv"), ("video", "sendrecv")]
        assert link.answers_received == 1 and link.signaling_state == "stable"
    if pages == 2:  # the pages' own call is undisturbed
        frames_rising(ps[0], ids[1])
        frames_rising(ps[1], ids[0])


def test_every_signal_names_its_connection(server, open_page, aiortc_peer):
    """aiortc calls a page (aiortc picks conn), then another page calls aiortc (the page
    picks it): every signal from a page carries the conn of the connection it belongs to."""
    room = "conn-ids"
    a = open_page(room_url(server.url, room, "Ada"))
    ida = joined_id(a)
    py = aiortc_peer(room)
    py.join()
    media_both_ways(a, ida, py)
    b = open_page(room_url(server.url, room, "Grace"))
    idb = joined_id(b)
    media_both_ways(b, idb, py)
    conns = {pid: py.link(pid).conn for pid in (ida, idb)}
    assert conns[ida] is not None  # ours: aiortc called
    assert conns[idb] is not None and CONN_RE.fullmatch(conns[idb]), conns  # the page's, adopted
    assert conns[ida] != conns[idb]
    # A `view` is about what aiortc sends, not about a connection: it names none.
    signals = [m for m in py.client.received if m["type"] == "signal" and "view" not in m]
    assert {m["from"] for m in signals} == {ida, idb}
    unnamed = [(m["from"], "description" if "description" in m else "candidate") for m in signals
               if "conn" not in m]
    assert not unnamed, f"signals from the page without conn: {unnamed}"
    wrong = [(m["from"], m["conn"]) for m in signals if m["conn"] != conns[m["from"]]]
    assert not wrong, f"signals naming another connection: {wrong} (connections: {conns})"


def test_renegotiation_from_aiortc_keeps_the_pages_connection(server, open_page, aiortc_peer):
    page, page_id, py = page_and_aiortc(server, open_page, aiortc_peer, "renegotiate")
    keep_connection(page, py.id)
    rebuilds = state(page)["rebuilds"]
    link = py.link(page_id)
    first_session = link.offers_sent[0]
    time.sleep(1.1)  # aiortc's o= session id is in whole seconds: make sure this offer gets a new one

    new_session = py.run(py.client.renegotiate(page_id, py.client.add_video))
    assert new_session != first_session, "aiortc was expected to change its SDP session id"
    wait_for(lambda: link.answers_received == 2 and link.signaling_state == "stable", 10,
             what="the page to answer the renegotiation")
    wait_for(lambda: (pc := page_pc(page, py.id)) and pc["signaling"] == "stable"
             and len(pc["transceivers"]) == 3, 10, what="the page stable with the third transceiver")
    assert same_connection(page, py.id), "the page replaced its connection on a renegotiation"
    assert state(page)["rebuilds"] == rebuilds
    assert py.link(page_id) is link and link.conn == py.link(page_id).conn
    assert [t.currentDirection for t in link.pc.getTransceivers()] == ["sendrecv", "sendrecv", "sendonly"]
    frames_rising(page, py.id)
    aiortc_frames_rising(py, page_id)
    assert tile(page, py.id).count() == 1


@pytest.mark.parametrize("aiortc_larger", [True, False], ids=["aiortc-polite", "aiortc-impolite"])
def test_offer_collision_ends_stable_with_media(server, open_page, aiortc_peer, aiortc_larger):
    """Both sides offer at once. aiortc cannot roll back: it ignores the page's offer and
    waits for its answer. A polite page rolls back at once; an impolite page waits
    COLLISION_WAIT_MS for an answer, then rolls back. Either way both changes land."""
    room = "glare-" + ("larger" if aiortc_larger else "smaller")
    page = open_page(room_url(server.url, room, "Ada"))
    page_id = joined_id(page)
    py = aiortc_peer(room)
    for attempt in range(24):  # ids are random: rejoin until the order is the one wanted
        welcome = py.join(call=False)
        if (welcome["id"] > page_id) == aiortc_larger:
            break
        py.leave()
        wait_for(lambda: tile(page, welcome["id"]).count() == 0, 5, what="the page to forget the last try")
        if attempt % 4 == 3:  # the page's id may sit at one end of the range: give it a new one too
            page.reload()
            page_id = joined_id(page)
    else:
        pytest.fail("no id in the wanted order after 24 joins")
    py.run(py.client.call_everyone())
    media_both_ways(page, page_id, py)
    keep_connection(page, py.id)
    rebuilds = state(page)["rebuilds"]
    link = py.link(page_id)
    answered, ignored = link.offers_answered, link.ignored_offers

    # aiortc sets its offer locally and holds it; the page makes its own offer; once the page's
    # offer has reached aiortc (and been ignored), aiortc's goes out: they cross.
    hold = asyncio.Event()
    ours = asyncio.run_coroutine_threadsafe(py.client.renegotiate(page_id, py.client.add_video, hold), py.loop)
    wait_for(lambda: link.signaling_state == "have-local-offer", 10, what="aiortc's offer set locally")
    page.evaluate("(id) => { window.meshcall.peers().get(id).addTransceiver('video', {direction: 'recvonly'}); }",
                  py.id)
    wait_for(lambda: link.ignored_offers > ignored, 10, what="the page's offer to reach aiortc")
    py.call_soon(hold.set)
    ours.result(10)

    def settled() -> bool:
        pc = page_pc(page, py.id)
        return bool(pc and pc["signaling"] == "stable" and link.signaling_state == "stable"
                    and len(pc["transceivers"]) == 4 and all(t["mid"] is not None and t["current"] is not None
                                                            for t in pc["transceivers"]))

    wait_for(settled, 15, what="both sides stable with both changes negotiated")
    assert link.answers_received >= 2, "the page never answered aiortc's offer"
    assert link.offers_answered > answered, "the page never re-offered its own change"
    assert len(link.pc.getTransceivers()) == 4
    assert same_connection(page, py.id), "the page replaced its connection in the collision"
    assert state(page)["rebuilds"] == rebuilds
    assert py.link(page_id) is link
    frames_rising(page, py.id)
    aiortc_frames_rising(py, page_id)


def test_leave_from_aiortc_removes_its_tile_at_once(server, open_page, aiortc_peer):
    page, page_id, py = page_and_aiortc(server, open_page, aiortc_peer, "leaving")
    keep_connection(page, py.id)
    gone = py.id
    assert tile(page, gone).count() == 1
    py.leave()
    t0 = time.monotonic()
    # "At once": well inside the 8 s a vanished peer is held (VANISHED_HOLD_SECONDS), with room
    # for a busy machine.
    wait_for(lambda: tile(page, gone).count() == 0, 5, 0.05, what="the tile to go at once")
    took = time.monotonic() - t0
    assert page.evaluate("(id) => window.__kept[id].signalingState", gone) == "closed"
    assert not page.evaluate("(id) => window.meshcall.peers().has(id)", gone)
    assert gone not in state(page)["peers"]
    assert page.locator(".tile").count() == 1  # only the page's own
    print(f"\naiortc leave: tile gone {took:.2f}s after the leave frame")


def test_dropped_socket_resumes_and_the_pages_connection_survives(server, open_page, aiortc_peer):
    page, page_id, py = page_and_aiortc(server, open_page, aiortc_peer, "resume")
    keep_connection(page, py.id)
    page.evaluate("(id) => { document.querySelector(`.tile[data-peer-id='${id}']`).dataset.mark = 'kept'; }",
                  py.id)
    rebuilds = state(page)["rebuilds"]
    old_id, link = py.id, py.link(page_id)

    py.drop()  # TCP reset: no leave, no close frame
    frames_rising(page, old_id)  # media is browser to aiortc: unaffected
    welcome = py.join(resume=True)
    assert welcome["resumed"] is True and welcome["id"] == old_id
    assert [p["id"] for p in welcome["peers"]] == [page_id]
    pongs = py.client.pongs
    wait_for(lambda: py.client.pongs > pongs, 5, what="a pong on the resumed socket")

    assert py.link(page_id) is link and link.connection_state == "connected"
    assert same_connection(page, old_id), "the page replaced its connection to a resumed peer"
    assert state(page)["rebuilds"] == rebuilds
    assert tile(page, old_id).get_attribute("data-mark") == "kept", "the page dropped the resumed peer's tile"
    frames_rising(page, old_id)
    aiortc_frames_rising(py, page_id)
    # Signaling works again: a media change reaches the page.
    py.run(_send(py, {"type": "media", "audio": False, "video": True}))
    wait_for(lambda: tile(page, old_id).get_attribute("data-audio") == "false", 5, what="peer-updated after resume")


def test_four_person_mesh_with_aiortc(server, browser, open_page, aiortc_peer):
    """Page A, then aiortc (it calls A), then pages B and C (they call A and aiortc)."""
    room = "four"
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 640, "height": 480})
    try:
        a = open_page(room_url(server.url, room, "A"), context=context)
        ida = joined_id(a)
        py = aiortc_peer(room)
        py.join()
        pages = [a] + [open_page(room_url(server.url, room, n), context=context) for n in ("B", "C")]
        ids = [ida] + [joined_id(p) for p in pages[1:]]
        everyone = set(ids) | {py.id}
        for page, me in zip(pages, ids):
            wait_for(lambda: decoding_from(page, everyone - {me}), 40, 0.5, what=f"{me} decoding the other three")
        wait_for(lambda: aiortc_decoding(py, set(ids)), 40, 0.5, what="aiortc decoding the three pages")
        for page, me in zip(pages, ids):
            frames_rising(page, py.id)
            aiortc_frames_rising(py, me)
            assert page.locator(".tile").count() == 4
        assert sorted(py.client.links) == sorted(ids)
        assert py.link(ida).offers_sent and all(py.link(i).offers_answered == 1 for i in ids[1:])
    finally:
        context.close()


async def _send(py: Participant, msg: dict[str, Any]) -> None:
    py.client.send(msg)
