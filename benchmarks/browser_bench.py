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
frame of each connection. Runs alternate meshcall/floor; medians are reported.

Each scenario is measured twice: a **first visit** (a fresh context: nothing cached) and a
**returning visit** (the same N pages were opened once in that context, in another room,
and closed before the clock starts: what a device that was here yesterday loads). Must run
in a private network namespace (./scripts/bench does that)."""

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
  // Where the time goes: the first moment of each step, on this page (Date.now()).
  const steps = { script: Date.now() };
  const timelines = new Map();
  const bench = { firstFrames: [], steps, timelines: () => [...timelines.values()] };
  Object.defineProperty(window, '__bench', { value: bench });
  const mark = (o, k) => { if (!(k in o)) o[k] = Date.now(); };
  const gum = navigator.mediaDevices && navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  if (gum) navigator.mediaDevices.getUserMedia = async (c) => { const s = await gum(c); mark(steps, 'camera'); return s; };
  const OrigWS = window.WebSocket;
  window.WebSocket = function (...args) {
    const ws = new OrigWS(...args);
    ws.addEventListener('open', () => mark(steps, 'socketOpen'));
    ws.addEventListener('message', (e) => { if (String(e.data).includes('"welcome"')) mark(steps, 'welcome'); });
    return ws;
  };
  window.WebSocket.prototype = OrigWS.prototype;
  Object.setPrototypeOf(window.WebSocket, OrigWS);
  function Wrapped(...args) {
    const pc = new Orig(...args);
    pcs.push(pc);
    const t = { created: Date.now() };
    timelines.set(pc, t);
    const sld = pc.setLocalDescription.bind(pc);
    pc.setLocalDescription = async (...a) => {
      const r = await sld(...a);
      if (pc.localDescription) mark(t, pc.localDescription.type === 'offer' ? 'offerSet' : 'answerSet');
      return r;
    };
    const srd = pc.setRemoteDescription.bind(pc);
    pc.setRemoteDescription = async (d) => {
      const r = await srd(d);
      mark(t, d && d.type === 'offer' ? 'offerApplied' : 'answerApplied');
      return r;
    };
    pc.addEventListener('icecandidate', (e) => { if (e.candidate) mark(t, 'firstCandidate'); });
    pc.addEventListener('connectionstatechange', () => { if (pc.connectionState === 'connected') mark(t, 'connected'); });
    return pc;
  }
  Wrapped.prototype = Orig.prototype;
  Object.setPrototypeOf(Wrapped, Orig);
  window.RTCPeerConnection = Wrapped;
  setInterval(async () => {
    for (const pc of pcs) {
      if (seen.has(pc) || pc.connectionState === 'closed') continue;
      const report = await pc.getStats();
      let frames = 0;
      report.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0; });
      if (frames > 0 && !seen.has(pc)) {
        seen.add(pc);
        bench.firstFrames.push(Date.now());
        mark(timelines.get(pc), 'firstFrame');
      }
    }
  }, 20);
})();"""

#: The steps of a join, in order, as INIT_JS marks them: per page, then per connection.
PAGE_STEPS = ("script", "camera", "socketOpen", "welcome")
CONNECTION_STEPS = ("created", "offerSet", "offerApplied", "answerSet", "answerApplied", "firstCandidate",
                    "connected", "firstFrame")

def _urls(base: str, kind: str, people: int, room: str) -> list[str]:
    return [f"{base}/r/{room}?name=Bench{i}&lowres=1" if kind == "meshcall"
            else f"{base}/bench-floor/?room={room}&name=Bench{i}" for i in range(people)]


def _steps(pages: list[Any], t0: float) -> dict[str, float]:
    """Seconds from the start to each step: per page steps, the median page; per connection
    steps, the median connection that got that far (a step a side never takes, such as
    applying an offer on the side that makes it, is left out of that side's median)."""
    marks: dict[str, list[float]] = {k: [] for k in (*PAGE_STEPS, *CONNECTION_STEPS)}
    for page in pages:
        got = page.evaluate("() => ({page: window.__bench.steps, connections: window.__bench.timelines()})")
        for k in PAGE_STEPS:
            if k in got["page"]:
                marks[k].append((got["page"][k] - t0) / 1000)
        for timeline in got["connections"]:
            for k in CONNECTION_STEPS:
                if k in timeline:
                    marks[k].append((timeline[k] - t0) / 1000)
    return {k: statistics.median(v) for k, v in marks.items() if v}


def one_run(browser: Any, base: str, kind: str, people: int, room: str,
            returning: bool = False) -> tuple[float, dict[str, float]]:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 800, "height": 600})
    try:
        context.add_init_script(INIT_JS)
        if kind == "floor":
            context.add_init_script(path=str(FLOOR_JS))
        if returning:  # yesterday's visit: the page and what it loads are in this context's cache
            earlier = [context.new_page() for _ in range(people)]
            for page, url in zip(earlier, _urls(base, kind, people, f"{room}-before")):
                page.goto(url, wait_until="load")
            for page in earlier:
                page.close()
        pages = [context.new_page() for _ in range(people)]
        errors: list[str] = []
        for p in pages:
            p.on("pageerror", lambda exc: errors.append(str(exc)))
        urls = _urls(base, kind, people, room)
        t0 = time.time() * 1000
        for page, url in zip(pages, urls):
            page.goto(url, wait_until="commit")
        deadline = time.monotonic() + TIMEOUT
        while True:
            stamps = [p.evaluate("() => window.__bench ? window.__bench.firstFrames.slice() : []") for p in pages]
            if all(len(s) >= people - 1 for s in stamps):
                return (max(sorted(s)[people - 2] for s in stamps) - t0) / 1000, _steps(pages, t0)
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
                for returning in (False, True):
                    visit = "returning visit" if returning else "first visit"
                    times: dict[str, list[float]] = {"meshcall": [], "floor": []}
                    steps: dict[str, list[dict[str, float]]] = {"meshcall": [], "floor": []}
                    failures: list[str] = []
                    for i in range(runs):
                        for kind in (("meshcall", "floor") if i % 2 == 0 else ("floor", "meshcall")):
                            try:
                                t, marks = one_run(browser, srv.url, kind, n, f"b{n}-{kind}-{i}-{int(returning)}",
                                                   returning)
                                times[kind].append(t)
                                steps[kind].append(marks)
                                log(f"  browser {n} people, {visit}, {kind}, run {i + 1}: {t:.2f}s")
                            except Exception as exc:
                                failures.append(f"{kind} run {i + 1}: {exc}"[:300])
                                log(f"  browser {n} people, {visit}, {kind}, run {i + 1}: FAILED {exc}"[:300])
                    m = statistics.median(times["meshcall"]) if times["meshcall"] else None
                    f = statistics.median(times["floor"]) if times["floor"] else None
                    what = "first decoded remote frame" if n == 2 else "complete mesh"
                    name = f"{n} people, {visit}: {what}"
                    out["scenarios"][name] = {"people": n, "runs": runs, "returning": returning,
                                              "meshcall_s": times["meshcall"], "floor_s": times["floor"],
                                              "meshcall_median_s": m, "floor_median_s": f,
                                              "ratio": m / f if m and f else None, "failures": failures,
                                              "steps": {kind: _median_steps(runs_) for kind, runs_ in steps.items()}}
    return out


def _median_steps(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each step's median over the runs that reached it."""
    keys = [k for k in (*PAGE_STEPS, *CONNECTION_STEPS) if any(k in r for r in runs)]
    return {k: statistics.median([r[k] for r in runs if k in r]) for k in keys}
