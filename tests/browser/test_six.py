"""The six-person room on weak devices: two of six pages CPU-throttled 4x while another
process keeps one core busy. The room must converge (every page decoding every other)
and then hold: no page loses its signaling socket, its id or a connection."""

from __future__ import annotations

import time
from typing import Any

import pytest

from browser.load import busy_core, throttled_page
from browser.meet import decoding_from, joined_id, logs, room_url, state, stats, tiles_agree, wait_for
from helpers.netns import private_lan
from helpers.procs import Meshcall

pytestmark = [pytest.mark.browser, pytest.mark.netns]

HOLD_SECONDS = 30
VIDEO_BUDGET_KBPS = 2500  # quality.js POLICY.videoBudgetKbps
SIX_STEP_LINES = 240  # quality.js: the step for 5-6 people


# Bytes sent so far by each outbound video stream, keyed by connection and stream.
VIDEO_SENT_JS = """async () => {
  const sent = {};
  const ids = window.__pcIds || (window.__pcIds = new WeakMap());
  for (const [id, pc] of window.meshcall.peers()) {
    if (!ids.has(pc)) ids.set(pc, Math.random());
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') sent[`${id} ${ids.get(pc)} ${r.id}`] = r.bytesSent;
    });
  }
  return [performance.now(), sent];
}"""


def video_kbps_out(pages: list[Any], seconds: float = 4.0) -> list[float]:
    """Each page's total outbound video bitrate, over all its connections, measured over the
    same span (a stream that came or went between the two readings is left out: its bytes
    are not all in this span)."""
    firsts = [page.evaluate(VIDEO_SENT_JS) for page in pages]
    time.sleep(seconds)
    rates = []
    for page, (t1, first) in zip(pages, firsts):
        t2, second = page.evaluate(VIDEO_SENT_JS)
        sent = sum(second[k] - first[k] for k in first.keys() & second.keys())
        rates.append(sent * 8 / (t2 - t1))  # bits per ms = kbit/s
    return rates


def connection_states(page: Any) -> list[str]:
    return sorted(s["connectionState"] for s in stats(page).values())


def explain(pages: list[Any], ids: list[str], server: Meshcall, since: dict[str, dict[str, int]] | None = None) -> None:
    """What each page was doing, for the log of a failed run: its state, each connection,
    and for each stream that is not decoding (or, with `since`, not rising) the receiver's
    connection log and what the sender chose to send; then the end of the server's log."""
    for page, me in zip(pages, ids):
        now = stats(page)
        print(state(page), {k: (v["connectionState"], v["framesDecoded"]) for k, v in now.items()})
        base = {} if since is None else since.get(me)
        if base is None:
            continue  # only the pages named in `since` are looked at stream by stream
        for other in sorted(set(ids) - {me}):
            if now.get(other, {}).get("framesDecoded", 0) > base.get(other, 0):
                continue
            sender = pages[ids.index(other)]
            print(f"  {other} -> {me}: sender chose", sender.evaluate(
                "(id) => { const q = window.meshcall.quality(); return [q.applied[id], q.views[id], q.reasons[id]]; }",
                me), stats(sender).get(me))
            print(f"  {me}'s log of {other}:", *page.evaluate("(id) => window.meshcall.trace(id)", other),
                  sep="\n    ")
    print("the server's log, the end:", *server.output().splitlines()[-60:], sep="\n")


# Not met on these machines today: in 8 runs the room converged and held in 3, and in each of
# those every connection of the starved pages failed about 3 minutes in (the work of 30 streams
# is more than the one free core can do, and the encoders report no `cpu` limitation for the
# send policy to act on). Reported as an expected failure, never as a pass, until it holds.
@pytest.mark.xfail(reason="a six-person room with two 4x-throttled pages on a busy 2-core machine does not yet "
                          "converge and hold every time", strict=False)
@pytest.mark.timeout(600)
def test_six_people_two_of_them_slow_on_a_busy_machine_converge_and_hold(server, browser, open_page):
    errors: list[str] = []
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 640, "height": 480})
    try:
        with busy_core():
            pages = []
            for i in range(6):
                if i in (1, 4):  # slow ones among the early and the late joiners
                    page = throttled_page(context, 4)
                    page.on("pageerror", lambda exc: errors.append(str(exc)))
                    page.goto(room_url(server.url, "slow-six", f"Slow{i}", lowres=False))
                else:  # real cameras: 640x480, which the six-person step sends at 240 lines
                    page = open_page(room_url(server.url, "slow-six", f"P{i}", lowres=False), context=context)
                pages.append(page)
            ids = [joined_id(p, 60) for p in pages]
            assert len(set(ids)) == 6
            t0 = time.monotonic()
            try:
                for page, me in zip(pages, ids):
                    others = set(ids) - {me}
                    wait_for(lambda: decoding_from(page, others), 120, 1.0, what=f"{me} decoding all five others")
            except AssertionError:
                # The page that did not get there first: the others' logs take a while to read.
                late = ids.index(me)
                order = [late] + [i for i in range(len(pages)) if i != late]
                explain([pages[i] for i in order], [ids[i] for i in order], server)
                raise
            print(f"\nslow six: converged {time.monotonic() - t0:.1f}s after the last welcome")

            # Converged: now it must stay so. Sampled every few seconds for HOLD_SECONDS: the
            # same five connections (no rebuild, no new id), each connected. `disconnected`
            # is tolerated in a sample: it is ICE's own word for consent checks answered
            # late, which a starved page recovers from by itself; it must not last.
            repairs = [state(p)["rebuilds"] for p in pages]
            late_consent = 0
            end = time.monotonic() + HOLD_SECONDS
            while time.monotonic() < end:
                for page, me in zip(pages, ids):
                    st = state(page)
                    assert st["id"] == me, f"{me} lost its id: {st}"
                    assert st["phase"] == "joined", st
                    states = connection_states(page)
                    assert len(states) == 5 and set(states) <= {"connected", "disconnected"}, (me, states, st)
                    late_consent += states.count("disconnected")
                time.sleep(2)
            assert [state(p)["rebuilds"] for p in pages] == repairs, "a connection was rebuilt while holding"
            # A slow page whose socket drops comes back with its id, and nobody rebuilds.
            slow, slow_id = pages[1], ids[1]
            before = [state(p)["rebuilds"] for p in pages]
            t0 = time.monotonic()
            slow.evaluate("() => window.meshcall.dropSignaling()")
            try:
                wait_for(lambda: (s := state(slow))["signaling"] == "joined" and s["liveness"] is not None
                         and time.monotonic() - t0 > 0.2, 30, 0.1, what="the slow page to resume")
            except AssertionError:
                explain(pages, ids, server)
                raise
            resumed_after = time.monotonic() - t0
            assert state(slow)["id"] == slow_id
            assert [state(p)["rebuilds"] for p in pages] == before
            print(f"\nslow six: a 4x-throttled page resumed {resumed_after:.2f}s after dropping its socket")
            for page, me in zip(pages, ids):
                wait_for(lambda: connection_states(page) == ["connected"] * 5, 20, 1.0, what=f"{me}: five connected")
            for page, me in zip(pages, ids):
                others = set(ids) - {me}
                before = {k: v["framesDecoded"] for k, v in stats(page).items()}
                try:
                    wait_for(lambda: all(stats(page).get(o, {}).get("framesDecoded", 0) > before.get(o, 0)
                                         for o in others), 20, 1.0, what=f"{me} still decoding all five")
                except AssertionError:
                    explain(pages, ids, server, since={me: before})
                    raise
                # A tile agrees with its connection, read in one go (a starved page's
                # connections may all be `disconnected` for a moment, tiles with them),
                # and all six come back to connected.
                try:
                    wait_for(lambda: tiles_agree(page, me), 20, 0.5, what=f"{me}: six tiles connected")
                except AssertionError:
                    for other in sorted(set(ids) - {me}):
                        print(f"  {me}'s log of {other}:", *page.evaluate("(id) => window.meshcall.trace(id)", other),
                              sep="\n    ")
                    raise
                assert state(page)["liveness"]["deadSockets"] == 0, state(page)
        figures = [state(p)["liveness"] | {"rebuilds": state(p)["rebuilds"], "iceRestarts": state(p)["iceRestarts"]}
                   for p in pages]
        print("\nslow six: liveness per page", figures, f"; samples of a connection disconnected: {late_consent}")
    finally:
        context.close()
    assert "left (gone)" not in server.output(), "a page was dropped by the grace period"
    assert not errors, errors


@pytest.mark.timeout(600)
def test_six_people_send_every_connection_within_the_room_size_step_and_the_mesh_budget(server, browser, open_page):
    """Mesh-aware sending in a full room of real 640x480 cameras: every connection at most
    the six-person step's height, each page's whole upload within the budget."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 640, "height": 480})
    try:
        pages = [open_page(room_url(server.url, "step-six", f"P{i}", lowres=False), context=context)
                 for i in range(6)]
        ids = [joined_id(p, 60) for p in pages]
        for page, me in zip(pages, ids):
            others = set(ids) - {me}
            wait_for(lambda: decoding_from(page, others), 120, 1.0, what=f"{me} decoding all five others")
        for page, me in zip(pages, ids):
            def heights() -> list[int]:
                return [s["outHeight"] for s in stats(page).values()]

            try:
                wait_for(lambda: len(heights()) == 5 and all(0 < h <= SIX_STEP_LINES for h in heights()), 20, 1.0,
                         what=f"{me} sending every connection within the step")
            except AssertionError:
                print(me, page.evaluate("() => window.meshcall.quality()"), stats(page))
                logs(page, me, ids, server)
                raise
            print(f"\n{me}: frame heights sent {heights()}")
        rates = video_kbps_out(pages)
        for me, kbps in zip(ids, rates):
            print(f"{me}: sends {kbps:.0f} kbit/s of video")
            assert 0 < kbps <= VIDEO_BUDGET_KBPS, (me, kbps)
    finally:
        context.close()


@pytest.mark.timeout(600)
def test_six_people_relay_only_converge_with_every_pair_relayed_through_the_appliance(browser, open_page):
    """--relay-only on a test LAN: 30 streams, every one through the built-in TURN server
    (each page holds five connections over UDP and TCP: the quotas must allow a full room)."""
    with private_lan() as (appliance_ip, _):
        with Meshcall(["--relay-only"], turn=True, host=appliance_ip) as mc:
            mc.wait_for("TURN: self-check: relay works", 20)
            context = browser.new_context(ignore_https_errors=True, viewport={"width": 640, "height": 480})
            try:
                pages = [open_page(room_url(mc.url, "relay-six", f"P{i}"), context=context) for i in range(6)]
                ids = [joined_id(p, 60) for p in pages]
                assert len(set(ids)) == 6
                for page, me in zip(pages, ids):
                    others = set(ids) - {me}
                    wait_for(lambda: decoding_from(page, others), 120, 1.0, what=f"{me} decoding all five others")
                for page, me in zip(pages, ids):
                    for other, s in stats(page).items():
                        pair = s["pair"]
                        assert pair and pair["local"] == "relay" and pair["remote"] == "relay", (me, other, pair)
                        assert pair["localAddress"] == appliance_ip and pair["remoteAddress"] == appliance_ip, pair
            finally:
                context.close()
            refused = mc.output().count("allocation quota reached")
            print(f"\nrelay six: {refused} allocations refused for quota")
