"""Joining in a real browser: meshcall's page against a bare floor page, same signaling server.

For N people (2, then 6) the bench opens N pages of one fresh browser context at once and
times from the first `goto` to the moment every page decodes video from every other page
(for 2 people: each has its first decoded remote frame; for 6: the complete 30-stream mesh).
Both pages run on meshcall's origin and signal through meshcall's /ws:

- meshcall: `/r/<room>?name=..&lowres=1` (joins at once, 320x240 camera);
- floor: benchmarks/floor_page/floor.js, added as a Playwright init script to pages opened
  at `/bench-floor/?room=..` — a plain 404 document from meshcall, so the same origin and
  the same address space (a document fulfilled by `page.route` is not: Chromium's local
  network access checks then block its WebSocket to 127.0.0.1) — asking for the same
  320x240 camera.

An init script wraps RTCPeerConnection in both pages and polls getStats every 20 ms to
stamp (Date.now(), the machine's wall clock, as the bench's start time is) the first decoded
frame of each connection. Runs alternate meshcall/floor; medians are reported. Must run in
a private network namespace (./scripts/bench does that)."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from common import meshcall_server  # noqa: E402

FLOOR_JS = HERE / "floor_page" / "floor.js"
TIMEOUT = 60.0

INIT_JS = """(() => {
  const Orig = window.RTCPeerConnection;
  if (!Orig) return;
  const pcs = [];
  const seen = new WeakSet();
  const bench = { firstFrames: [] };
  Object.defineProperty(window, '__bench', { value: bench });
  function Wrapped(...args) { const pc = new Orig(...args); pcs.push(pc); return pc; }
  Wrapped.prototype = Orig.prototype;
  Object.setPrototypeOf(Wrapped, Orig);
  window.RTCPeerConnection = Wrapped;
  setInterval(async () => {
    for (const pc of pcs) {
      if (seen.has(pc) || pc.connectionState === 'closed') continue;
      const report = await pc.getStats();
      let frames = 0;
      report.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0; });
      if (frames > 0 && !seen.has(pc)) { seen.add(pc); bench.firstFrames.push(Date.now()); }
    }
  }, 20);
})();"""

def one_run(browser: Any, base: str, kind: str, people: int, room: str) -> float:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 800, "height": 600})
    try:
        context.add_init_script(INIT_JS)
        if kind == "floor":
            context.add_init_script(path=str(FLOOR_JS))
        pages = [context.new_page() for _ in range(people)]
        errors: list[str] = []
        for p in pages:
            p.on("pageerror", lambda exc: errors.append(str(exc)))
        urls = [f"{base}/r/{room}?name=Bench{i}&lowres=1" if kind == "meshcall"
                else f"{base}/bench-floor/?room={room}&name=Bench{i}" for i in range(people)]
        t0 = time.time() * 1000
        for page, url in zip(pages, urls):
            page.goto(url, wait_until="commit")
        deadline = time.monotonic() + TIMEOUT
        while True:
            stamps = [p.evaluate("() => window.__bench ? window.__bench.firstFrames.slice() : []") for p in pages]
            if all(len(s) >= people - 1 for s in stamps):
                return (max(sorted(s)[people - 2] for s in stamps) - t0) / 1000
            if errors:
                raise RuntimeError(f"{kind}: page error: {errors[0]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind}: {people} people not all decoding after {TIMEOUT}s: {stamps}")
            time.sleep(0.1)
    finally:
        context.close()


def run(runs: int = 5, people: tuple[int, ...] = (2, 6), log=print) -> dict[str, Any]:
    from helpers.browser import chromium

    out: dict[str, Any] = {"scenarios": {}, "method": "N pages opened at once in one context; time to every "
                                                        "page decoding video from every other"}
    with tempfile.TemporaryDirectory(prefix="meshcall-bench-browser-") as tmp:
        with meshcall_server(Path(tmp) / "data") as srv, chromium() as browser:
            one_run(browser, srv.url, "meshcall", 2, "warmup")  # first launch costs are nobody's
            for n in people:
                times: dict[str, list[float]] = {"meshcall": [], "floor": []}
                failures: list[str] = []
                for i in range(runs):
                    for kind in (("meshcall", "floor") if i % 2 == 0 else ("floor", "meshcall")):
                        try:
                            t = one_run(browser, srv.url, kind, n, f"b{n}-{kind}-{i}")
                            times[kind].append(t)
                            log(f"  browser {n} people, {kind}, run {i + 1}: {t:.2f}s")
                        except Exception as exc:
                            failures.append(f"{kind} run {i + 1}: {exc}"[:300])
                            log(f"  browser {n} people, {kind}, run {i + 1}: FAILED {exc}"[:300])
                m = statistics.median(times["meshcall"]) if times["meshcall"] else None
                f = statistics.median(times["floor"]) if times["floor"] else None
                name = "2 people: first decoded remote frame" if n == 2 else f"{n} people: complete mesh"
                out["scenarios"][name] = {"people": n, "runs": runs, "meshcall_s": times["meshcall"],
                                          "floor_s": times["floor"], "meshcall_median_s": m, "floor_median_s": f,
                                          "ratio": m / f if m and f else None, "failures": failures}
    return out
