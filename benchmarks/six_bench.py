"""The six-person room with and without mesh-aware sending, and with slow devices.

One scenario = six pages of one fresh browser context opened at once on real-size
cameras (640x480, what a laptop's webcam gives), same server, same ICE servers:

- `meshcall`: the room page with the send-quality policy (quality.js) and view reports;
- `meshcall, adapt=0`: the same page with both turned off (`?adapt=0`);
- `floor`: the bare floor page (benchmarks/floor_page), same camera;
- the two meshcall pages again with two of the six pages CPU-throttled 4x
  (DevTools `Emulation.setCPUThrottlingRate`, like a phone next to this machine).

Per scenario: time from the first `goto` to the complete 30-stream mesh (every page
decoding every other), then, after 5 s of settling, over a 10 s window: CPU seconds of
the whole browser (every Chromium process) per page, upload per page (outbound RTP bytes,
audio and video), and the decoded frame rate of each stream (lowest on an unthrottled
page, and the median). Must run in a private network namespace (./scripts/bench)."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from browser_bench import FLOOR_JS, INIT_JS

TIMEOUT = 120.0
SETTLE = 5.0
WINDOW = 10.0
SLOW = (1, 4)

COUNTERS_JS = """async () => {
  const pcs = window.meshcall ? [...window.meshcall.peers().entries()]
                              : (window.__benchPcs || []).map((pc, i) => [String(i), pc]);
  let sent = 0; const frames = {};
  const ids = window.__benchIds || (window.__benchIds = new WeakMap());
  for (const [peer, pc] of pcs) {
    if (!ids.has(pc)) ids.set(pc, ids.n = (ids.n || 0) + 1);
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp') sent += s.bytesSent || 0;
      // Keyed by peer and RTP stream: a connection rebuilt in the window is a new stream
      // whose counter starts again, not a stream that went backwards.
      if (s.type === 'inbound-rtp' && s.kind === 'video') frames[peer + ':' + ids.get(pc) + ':' + s.ssrc] = s.framesDecoded || 0;
    });
  }
  return {t: performance.now(), sent, frames};
}"""

# The floor page keeps its connections to itself: remember them for COUNTERS_JS.
FLOOR_PCS_JS = """(() => {
  const Orig = window.RTCPeerConnection;
  const pcs = []; Object.defineProperty(window, '__benchPcs', {value: pcs});
  function Wrapped(...a) { const pc = new Orig(...a); pcs.push(pc); return pc; }
  Wrapped.prototype = Orig.prototype; Object.setPrototypeOf(Wrapped, Orig);
  window.RTCPeerConnection = Wrapped;
})();"""


def chromium_cpu_seconds() -> float:
    """utime + stime of every Chromium process of this machine's process tree below us."""
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        pid = int(entry)
        parents[pid], names[pid] = int(fields[1]), name
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for pid, name in names.items():
        if "chrom" not in name:
            continue
        p = pid
        while p > 1 and p != me:
            p = parents.get(p, 1)
        if p == me:
            total += cpu[pid]
    return total


def one_room(browser: Any, base: str, kind: str, room: str, throttled: bool) -> dict[str, Any]:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 800, "height": 600})
    try:
        context.add_init_script(INIT_JS)
        if kind == "floor":
            context.add_init_script(FLOOR_PCS_JS)
            context.add_init_script(path=str(FLOOR_JS))
        pages = []
        for i in range(6):
            page = context.new_page()
            if throttled and i in SLOW:
                context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": 4})
            pages.append(page)
        if kind == "floor":
            urls = [f"{base}/bench-floor/?room={room}&name=Bench{i}&hires=1" for i in range(6)]
        else:
            flag = "&adapt=0" if kind.endswith("adapt=0") else ""
            urls = [f"{base}/r/{room}?name=Bench{i}{flag}" for i in range(6)]
        t0 = time.time() * 1000
        for page, url in zip(pages, urls):
            page.goto(url, wait_until="commit")
        deadline = time.monotonic() + TIMEOUT
        while True:
            stamps = [p.evaluate("() => window.__bench ? window.__bench.firstFrames.slice() : []") for p in pages]
            if all(len(s) >= 5 for s in stamps):
                mesh = (max(sorted(s)[4] for s in stamps) - t0) / 1000
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind}: no complete mesh after {TIMEOUT}s: {[len(s) for s in stamps]}")
            time.sleep(0.2)
        time.sleep(SETTLE)
        cpu0 = chromium_cpu_seconds()
        first = [p.evaluate(COUNTERS_JS) for p in pages]
        time.sleep(WINDOW)
        second = [p.evaluate(COUNTERS_JS) for p in pages]
        cpu = chromium_cpu_seconds() - cpu0
        upload, fps_fast, fps_all = [], [], []
        for i, (a, b) in enumerate(zip(first, second)):
            dt = (b["t"] - a["t"]) / 1000
            upload.append((b["sent"] - a["sent"]) * 8 / 1000 / dt)
            # Streams present at both ends of the window; one that started meanwhile (a
            # rebuilt connection) has no rate over the whole window and is left out.
            rates = [(b["frames"][k] - a["frames"][k]) / dt for k in a["frames"]
                     if k in b["frames"] and b["frames"][k] >= a["frames"][k]]
            fps_all += rates
            if not (throttled and i in SLOW):
                fps_fast += rates
        return {"mesh_s": mesh, "cpu_s_per_page": cpu / 6, "cpu_window_s": WINDOW,
                "upload_kbps_per_page": statistics.median(upload), "upload_kbps_max": max(upload),
                "fps_min_unthrottled": min(fps_fast) if fps_fast else None,
                "fps_median": statistics.median(fps_all) if fps_all else None}
    finally:
        context.close()


SCENARIOS = [("meshcall", False), ("meshcall, adapt=0", False), ("floor", False),
             ("meshcall", True), ("meshcall, adapt=0", True)]


def run(base: str, browser: Any, runs: int = 1, log=print) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in range(runs):
        for kind, throttled in SCENARIOS:
            name = kind + (", 2 pages 4x slower" if throttled else "")
            try:
                res = one_room(browser, base, kind, f"six-{r}-{len(out)}-{int(throttled)}-{kind[-1]}", throttled)
            except Exception as exc:  # a scenario that fails is a figure too
                res = {"failed": str(exc)[:300]}
            out.setdefault(name, []).append(res)
            log(f"  six {name}, run {r + 1}: {res}")
    return out
