"""What the browser tests share: opening meeting pages and reading WebRTC stats from them."""

from __future__ import annotations

import time
from typing import Any, Callable
from urllib.parse import quote

# Per remote peer: inbound/outbound RTP counters and the selected candidate pair.
STATS_JS = """async () => {
  const out = {};
  for (const [id, pc] of window.meshcall.peers()) {
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    const r = {connectionState: pc.connectionState, framesDecoded: 0, audioPacketsReceived: 0,
               framesEncoded: 0, videoBytesSent: 0, audioPacketsSent: 0, pair: null,
               inWidth: 0, inHeight: 0, outWidth: 0, outHeight: 0, limitation: null};
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        r.framesDecoded += s.framesDecoded || 0; r.inWidth = s.frameWidth || 0; r.inHeight = s.frameHeight || 0;
      }
      if (s.type === 'inbound-rtp' && s.kind === 'audio') r.audioPacketsReceived += s.packetsReceived || 0;
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        r.framesEncoded += s.framesEncoded || 0; r.videoBytesSent += s.bytesSent || 0;
        r.outWidth = s.frameWidth || 0; r.outHeight = s.frameHeight || 0;
        r.limitation = s.qualityLimitationReason || null;
      }
      if (s.type === 'outbound-rtp' && s.kind === 'audio') r.audioPacketsSent += s.packetsSent || 0;
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const p = byId.get(s.selectedCandidatePairId);
        const l = p && byId.get(p.localCandidateId), m = p && byId.get(p.remoteCandidateId);
        if (l && m) r.pair = {local: l.candidateType, remote: m.candidateType,
                              localAddress: l.address, remoteAddress: m.address, protocol: l.protocol};
      }
    });
    out[id] = r;
  }
  return out;
}"""


def room_url(base: str, room: str, name: str | None = None, lowres: bool = True) -> str:
    q = []
    if name is not None:
        q.append("name=" + quote(name))
    if lowres:
        q.append("lowres=1")
    return f"{base}/r/{room}" + ("?" + "&".join(q) if q else "")


def wait_for(check: Callable[[], Any], timeout: float = 20, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll until check() is truthy; returns its value or fails with the last one seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def stats(page: Any) -> dict[str, dict[str, Any]]:
    return page.evaluate(STATS_JS)


def state(page: Any) -> dict[str, Any]:
    return page.evaluate("() => window.meshcall.state()")


def decoding_from(page: Any, peer_ids: set[str], min_frames: int = 1) -> bool:
    """Whether this page decodes video and receives audio from every listed peer."""
    s = stats(page)
    return all(pid in s and s[pid]["framesDecoded"] >= min_frames and s[pid]["audioPacketsReceived"] > 0
               for pid in peer_ids)


def frames_rising(page: Any, peer_id: str, timeout: float = 10) -> int:
    """Wait until video frames decoded from peer_id go up; returns the new count."""
    start = stats(page).get(peer_id, {}).get("framesDecoded", 0)
    return wait_for(lambda: (n := stats(page).get(peer_id, {}).get("framesDecoded", 0)) > start + 5 and n,
                    timeout, what=f"frames from {peer_id} to rise above {start}")


def joined_id(page: Any, timeout: float = 20) -> str:
    return wait_for(lambda: (s := state(page))["phase"] == "joined" and s["id"], timeout, what="welcome")


def stalled(page: Any, peer_id: str, key: str, gap: float = 1.0) -> bool:
    """Whether a stats counter for peer_id stays still for `gap` seconds."""
    before = stats(page)[peer_id][key]
    time.sleep(gap)
    return stats(page)[peer_id][key] == before


def rising(page: Any, peer_id: str, key: str, gap: float = 1.0) -> bool:
    before = stats(page)[peer_id][key]
    time.sleep(gap)
    return stats(page)[peer_id][key] > before


# Each tile with what it shows and its connection's state, read in one task so they can be
# compared: a tile mirrors its connection.
TILES_JS = """() => {
  const pcs = window.meshcall.peers();
  return [...document.querySelectorAll('.tile')].map((t) => [t.dataset.peerId, t.dataset.state,
    pcs.has(t.dataset.peerId) ? pcs.get(t.dataset.peerId).connectionState : null]);
}"""


def tiles_agree(page: Any, me: str, count: int = 6) -> bool:
    """Every remote tile says connected exactly when its connection is; True once all `count`
    (ours included) are connected."""
    tiles = page.evaluate(TILES_JS)
    for peer_id, shown, connection in tiles:
        if peer_id != me:
            assert (shown == "connected") == (connection == "connected"), (me, tiles)
    return len(tiles) == count and all(shown == "connected" for _, shown, _ in tiles)


def logs(page: Any, me: str, ids: list[str], server: Any) -> None:
    """One page's log of each of its connections, and the end of the server's log."""
    print(state(page))
    for other in sorted(set(ids) - {me}):
        print(f"  {me}'s log of {other}:", *page.evaluate("(id) => window.meshcall.trace(id)", other), sep="\n    ")
    print("the server's log, the end:", *server.output().splitlines()[-60:], sep="\n")


def pair(server: Any, open_page: Callable[..., Any], room: str, first: str = "Ada",
         second: str = "Grace") -> tuple[Any, Any, str, str]:
    """Two people in one room, with video decoded both ways: (page a, page b, id a, id b)."""
    a = open_page(room_url(server.url, room, first))
    b = open_page(room_url(server.url, room, second))
    ida, idb = joined_id(a), joined_id(b)
    wait_for(lambda: decoding_from(a, {idb}) and decoding_from(b, {ida}), 20, what="media both ways")
    return a, b, ida, idb
