"""The bench driver: run the parts side by side, print a markdown table, write JSON.

    python benchmarks/run.py [signaling|memory|turn|binary|browser|robustness ...] [--quick] [options]

Machines are shared and noisy: every claim is a ratio of figures taken in the same run.
All traffic goes to 127.0.0.1. Results go to bench-results/ (gitignored)."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import ROOT, machine, raise_nofile  # noqa: E402

PARTS = ("signaling", "memory", "binary", "turn", "browser", "robustness")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


# -- signaling ------------------------------------------------------------------


P99_LIMIT_MS = 50.0


def held(r: dict[str, Any]) -> bool:
    """A stack holds a size when every client joined, it kept ≥ 95 % of the rate, lost
    ≤ 1 % of the frames and delivered 99 % of them within 50 ms."""
    st = r.get("steady") or {}
    return (r.get("connections") == r["clients"] and "stopped" not in r and st.get("sent", 0) > 0
            and st.get("lost", 1) <= 0.01 * st["sent"] and st.get("achieved_rate", 0) >= 0.95 * r["rate"]
            and st.get("p99_ms") is not None and st["p99_ms"] < P99_LIMIT_MS)


def clearly_failed(r: dict[str, Any]) -> bool:
    """Failed for a reason that noise does not explain: a client could not join, frames
    were lost, the rate could not be kept, or the run stopped on seconds of latency."""
    st = r.get("steady") or {}
    return ("failed" in r or "stopped" in r or r.get("connections") != r["clients"] or not st.get("sent")
            or st.get("lost", 1) > 0.01 * st["sent"] or st.get("achieved_rate", 0) < 0.95 * r["rate"])


def per_cpu(r: dict[str, Any]) -> float | None:
    return (r.get("steady") or {}).get("msgs_per_cpu_s")


def part_signaling(args: argparse.Namespace) -> dict[str, Any]:
    """The ladder: every stack at each size in turn, smallest first, at the same load per
    client. A stack that clearly fails a size is not run at the larger ones."""
    import signaling_bench as sb

    out: dict[str, Any] = {"rounds": [], "per_client_rate": args.per_client_rate, "p99_limit_ms": P99_LIMIT_MS}
    alive = list(args.stacks)
    for conns in args.ladder:
        rooms = -(-conns // 6)
        rate = args.per_client_rate * rooms * 6
        log(f"signaling: {rooms} rooms x 6 = {rooms * 6} clients, {rate:g} relays/s for {args.duration:g}s "
            f"(load average {load_average()})")
        results: dict[str, Any] = {}
        for stack in args.stacks:
            if stack not in alive:
                results[stack] = {"stack": stack, "clients": rooms * 6, "rate": rate, "held": False,
                                  "not_run": "clearly failed a smaller size"}
                continue
            tries: list[dict[str, Any]] = []
            # A miss on the p99 alone, with everything delivered, may be the shared machine's
            # scheduler rather than the stack: such a size is tried again (at most
            # --retries times) and the better try counts; every try is kept in the JSON.
            while len(tries) <= args.retries:
                try:
                    r = sb.run_one(stack, rooms, rate, args.duration, workers=args.workers, log=log)
                except Exception as exc:  # one stack failing must not lose the others' figures
                    log(f"  {stack}: FAILED: {exc}")
                    r = {"stack": stack, "rooms": rooms, "clients": rooms * 6, "rate": rate,
                         "failed": f"{type(exc).__name__}: {exc}"[:500]}
                r["held"] = held(r)
                r["load_average"] = load_average()
                tries.append(r)
                if r["held"] or clearly_failed(r):
                    break
            best = min(tries, key=lambda t: (not t["held"], clearly_failed(t),
                                             (t.get("steady") or {}).get("p99_ms") or float("inf")))
            if len(tries) > 1:
                best["tries"] = [{k: t.get(k) for k in ("held", "load_average")} | {
                    "p99_ms": (t.get("steady") or {}).get("p99_ms")} for t in tries]
            results[stack] = best
            # A stack that clearly failed a size is not run at larger ones. One that missed
            # only on the p99 (twice) goes on: on a shared machine a larger size may still
            # be held, and the table shows the miss below it.
            if clearly_failed(best):
                alive.remove(stack)
        rnd: dict[str, Any] = {"clients": rooms * 6, "rate": rate, "results": results}
        m = results.get("meshcall", {})
        for ref in ("seed", "floor", "seed-threading"):
            r = results.get(ref, {})
            # A per-CPU ratio means something only where both stacks did the same work.
            rnd[f"meshcall_vs_{ref}_msgs_per_cpu"] = (ratio(per_cpu(m), per_cpu(r))
                                                       if m.get("held") and r.get("held") else None)
        out["rounds"].append(rnd)
    top = args.ladder[-1] if args.ladder else None
    # Capacity: the largest size held. Sizes missed below it (on the p99 alone) are listed.
    out["missed_below_capacity"] = {}
    out["capacity"] = {stack: max((rnd["clients"] for rnd in out["rounds"] if rnd["results"][stack].get("held")),
                                  default=0) for stack in args.stacks}
    out["top_of_ladder"] = out["rounds"][-1]["clients"] if out["rounds"] else top
    cap = out["capacity"]
    for stack, c in cap.items():
        missed = [rnd["clients"] for rnd in out["rounds"]
                  if rnd["clients"] < c and not rnd["results"][stack].get("held")]
        if missed:
            out["missed_below_capacity"][stack] = missed
    out["capacity_meshcall_vs_seed"] = ratio(cap.get("meshcall"), cap.get("seed"))
    last = out["rounds"][-1] if out["rounds"] else {}
    out["top_meshcall_vs_floor_msgs_per_cpu"] = last.get("meshcall_vs_floor_msgs_per_cpu")
    return out


def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def table_signaling(out: dict[str, Any]) -> list[str]:
    rows = ["| clients | stack | held | joined | rate sent/s | delivered | p50 ms | p99 ms | relays / server CPU-s "
            "| server CPU % | RSS / conn KiB | negotiation burst s | load avg |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for rnd in out["rounds"]:
        for stack, r in rnd["results"].items():
            if "not_run" in r:
                rows.append(f"| {fmt(rnd['clients'])} | {stack} | — | not run: {r['not_run']} "
                            "| | | | | | | | | |")
                continue
            if "failed" in r:
                rows.append(f"| {fmt(rnd['clients'])} | {stack} | **no** | failed: {r['failed'][:80]} "
                            f"| | | | | | | | | {r.get('load_average', '?')} |")
                continue
            st = r.get("steady", {})
            note = f" ({r['stopped']})" if "stopped" in r else ""
            if r.get("tries"):
                note += f" (best of {len(r['tries'])} tries, p99 " + " / ".join(
                    fmt(t["p99_ms"], 1) for t in r["tries"]) + " ms)"
            rows.append(
                f"| {fmt(rnd['clients'])} | {stack} | {('yes' if r.get('held') else '**no**') + note} "
                f"| {fmt(r.get('connections'))}/{fmt(r['clients'])} | {fmt(st.get('achieved_rate'), 0)} "
                f"of {fmt(r['rate'], 0)} | {fmt(st.get('received'))}/{fmt(st.get('sent'))} "
                f"| {fmt(st.get('p50_ms'), 2)} | {fmt(st.get('p99_ms'), 1)} | {fmt(st.get('msgs_per_cpu_s'), 0)} "
                f"| {fmt((st.get('server_cpu_util') or 0) * 100, 0)} | {fmt(r.get('rss_per_conn_kib'), 1)} "
                f"| {fmt(r.get('negotiation', {}).get('seconds'), 2)} | {r.get('load_average', '?')} |")
    rows.append("")
    cap = out["capacity"]
    top = out.get("top_of_ladder")
    rows.append(f"- capacity (largest size held: all joined, ≤ 1 % lost, p99 < {out['p99_limit_ms']:g} ms, "
                f"{out['per_client_rate']:g} relays/s per client): "
                + ", ".join(f"{stack} **{fmt(c) if c else 'none'}**{' (top of the ladder)' if c and c == top else ''}"
                            for stack, c in cap.items()))
    for stack, missed in out.get("missed_below_capacity", {}).items():
        rows.append(f"- {stack} missed {', '.join(fmt(n) for n in missed)} clients on the p99 alone, below its "
                    "capacity: the shared machine's tail, or a stack on the edge")
    cr = out.get("capacity_meshcall_vs_seed")
    if cr is not None:
        bound = "≥ " if cap.get("meshcall") == top else ""
        rows.append(f"- capacity meshcall ÷ seed: **{bound}{fmt(cr, 2)}×** (target ≥ 6×)"
                    + (" — meshcall held the top of the ladder, so this is a lower bound" if bound else ""))
    elif cap.get("meshcall") and not cap.get("seed") and "seed" in cap:
        rows.append("- capacity meshcall ÷ seed: the seed held no size of the ladder")
    for rnd in out["rounds"]:
        parts = [f"{ref} **{fmt(rnd.get(f'meshcall_vs_{ref}_msgs_per_cpu'), 2)}×**"
                 for ref in ("seed", "seed-threading", "floor") if rnd.get(f"meshcall_vs_{ref}_msgs_per_cpu")]
        if parts:
            rows.append(f"- {fmt(rnd['clients'])} clients: meshcall's relays per server CPU-second ÷ " + ", ".join(parts))
    tf = out.get("top_meshcall_vs_floor_msgs_per_cpu")
    rows.append(f"- at the top of the ladder ({fmt(top)} clients), meshcall ÷ floor in relays per CPU-second: "
                + (f"**{fmt(tf, 2)}×** (target ≥ 0.9×)" if tf else "— (not both held)"))
    return rows


# -- memory ---------------------------------------------------------------------


def part_memory(args: argparse.Namespace) -> dict[str, Any]:
    import memory_bench

    log(f"memory: {args.memory_connections} idle connections, {args.cycles} join/leave cycles")
    return memory_bench.run(args.memory_connections, args.cycles, log=log)


def table_memory(out: dict[str, Any]) -> list[str]:
    rows = [f"- meshcall RSS idle **{fmt(out['rss_idle_mib'])} MiB**; with {fmt(out['cycles'][0]['joined'])} joined "
            f"silent connections **{fmt(out['rss_held_mib'])} MiB** ({fmt(out['rss_per_conn_kib'])} KiB each); after "
            f"they leave **{fmt(out['rss_after_leave_mib'])} MiB**",
            "", "| cycle | joined | RSS held MiB | RSS after leave MiB |", "|---|---|---|---|"]
    for c in out["cycles"]:
        rows.append(f"| {c['cycle']} | {fmt(c['joined'])} | {fmt(c['rss_held_mib'])} | {fmt(c['rss_after_leave_mib'])} |")
    rows += ["", f"- growth of RSS-after-leave from cycle 1 to cycle {len(out['cycles'])}: "
             f"**{fmt(out['growth_after_first_cycle_mib'])} MiB**"]
    return rows


# -- the parts others own: called when present ------------------------------------


def part_optional(module: str, call: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return {"skipped": f"benchmarks/{module}.py is not there yet"}
        raise
    return call(mod)


def table_generic(out: dict[str, Any]) -> list[str]:
    if "skipped" in out:
        return [f"- skipped: {out['skipped']}"]
    rows = ["| figure | value |", "|---|---|"]
    for k, v in out.items():
        if isinstance(v, (dict, list)):
            v = json.dumps(v)[:200]
        rows.append(f"| {k} | {fmt(v, 3) if isinstance(v, float) else v} |")
    return rows


# -- browser ----------------------------------------------------------------------


def part_browser(args: argparse.Namespace) -> dict[str, Any]:
    import browser_bench

    out = browser_bench.run(runs=args.browser_runs, log=log) if not args.six_only else {"scenarios": {}}
    out["six"] = six_rooms(args)
    return out


def six_rooms(args: argparse.Namespace) -> dict[str, Any]:
    """The six-person room with adaptation on and off, and with two slow pages."""
    import tempfile
    from pathlib import Path

    import six_bench
    from common import meshcall_server
    from helpers.browser import chromium

    with tempfile.TemporaryDirectory(prefix="meshcall-bench-six-") as tmp:
        with meshcall_server(Path(tmp) / "data") as srv, chromium() as browser:
            return six_bench.run(srv.url, browser, runs=args.six_runs, log=log)


def table_browser(out: dict[str, Any]) -> list[str]:
    if "skipped" in out:
        return [f"- skipped: {out['skipped']}"]
    rows = ["| scenario | meshcall median s | floor median s | meshcall ÷ floor | runs |", "|---|---|---|---|---|"]
    for name, r in out["scenarios"].items():
        rows.append(f"| {name} | {fmt(r['meshcall_median_s'], 2)} | {fmt(r['floor_median_s'], 2)} "
                    f"| **{fmt(r['ratio'], 2)}×** | {r['runs']} |")
    if any(r.get("steps") for r in out["scenarios"].values()):
        import browser_bench

        names = (*browser_bench.PAGE_STEPS, *browser_bench.CONNECTION_STEPS)
        rows += ["", "Where the time goes: seconds from the start to each step (median page, median connection)",
                 "", "| scenario | page | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for name, r in out["scenarios"].items():
            for kind, marks in r.get("steps", {}).items():
                rows.append(f"| {name} | {kind} | " + " | ".join(fmt(marks.get(k), 2) for k in names) + " |")
    if out.get("six"):
        rows += ["", "| six people, 640×480 cameras | complete mesh s | browser CPU s per page (10 s) "
                 "| upload kbit/s per page | lowest fps (unthrottled) | median fps |", "|---|---|---|---|---|---|"]
        for name, results in out["six"].items():
            for r in results:
                if "failed" in r:
                    rows.append(f"| {name} | failed: {r['failed'][:80]} | | | | |")
                    continue
                rows.append(f"| {name} | {fmt(r['mesh_s'], 1)} | {fmt(r['cpu_s_per_page'], 2)} "
                            f"| {fmt(r['upload_kbps_per_page'], 0)} | {fmt(r['fps_min_unthrottled'], 1)} "
                            f"| {fmt(r['fps_median'], 1)} |")
    return rows


# -- robustness ---------------------------------------------------------------------


def part_robustness(args: argparse.Namespace) -> dict[str, Any]:
    import robustness_bench

    size = "quick" if args.quick else args.robustness_size
    log(f"robustness: a pair's round trips while each flood shape runs ({size} size)")
    return robustness_bench.run(size, log=log)


def table_robustness(out: dict[str, Any]) -> list[str]:
    from robustness_bench import summary

    size = out["sizes"]
    rows = [f"A pair relays `signal` frames at {fmt(size['pair_rate'], 0)}/s each way for {fmt(size['window'], 0)} s "
            f"per shape ({out['size']} size; server args beyond the ports: "
            f"`{' '.join(out['server_args'])}`).", "",
            "| shape | flood | pair p50 ms | pair p99 ms | pair lost | server RSS MiB before / peak / after "
            "| server CPU s | what the server did to the flood | tracebacks | load avg |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in out["shapes"].items():
        p, srv = r["pair"], r["server"]
        what, did = summary(name, size, r["flood"])
        rows.append(f"| {name} | {what} | {fmt(p['p50_ms'], 2)} | {fmt(p['p99_ms'], 1)} | {fmt(p['lost'])}/{fmt(p['sent'])}"
                    f"{' (' + '; '.join(p['trouble']) + ')' if p['trouble'] else ''} "
                    f"| {fmt(srv['rss_before_mib'])} / {fmt(srv['rss_peak_mib'])} / {fmt(srv['rss_after_mib'])} "
                    f"| {fmt(srv['cpu_s'], 2)} | {did} | {'**' + fmt(r['traceback_lines']) + '**' if r['traceback_lines'] else 'none'} "
                    f"| {fmt(r['load_average'])} |")
    rows += ["", f"- server still running at the end: {'yes' if out['server_alive_at_end'] else '**no**'}"]
    return rows


# -- main -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", choices=[*PARTS, []], default=[], metavar="PART",
                    help=f"which parts to run (default: all): {', '.join(PARTS)}")
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the bench itself works")
    ap.add_argument("--ladder", default=None,
                    help="client counts of the signaling ladder (rounded up to whole rooms of 6); "
                         "default 120,300,600,1200,2004, with --quick 30,60")
    ap.add_argument("--per-client-rate", type=float, default=2.5,
                    help="steady relays per second per client (2,004 clients: 5,010/s)")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of steady relays per stack")
    ap.add_argument("--retries", type=int, default=1,
                    help="signaling: tries again at a size missed only on the p99 (shared machines)")
    ap.add_argument("--workers", type=int, default=2, help="load-generator processes")
    ap.add_argument("--stacks", default="meshcall,seed,floor",
                    help="also: seed-threading (the seed's app on Werkzeug's threaded server, not what it deploys)")
    ap.add_argument("--memory-connections", type=int, default=2000)
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--browser-runs", type=int, default=5)
    ap.add_argument("--six-runs", type=int, default=1, help="runs of each six-person scenario")
    ap.add_argument("--six-only", action="store_true", help="browser part: only the six-person scenarios")
    ap.add_argument("--binary-runs", type=int, default=5)
    ap.add_argument("--turn-duration", type=float, default=10.0)
    ap.add_argument("--turn-streams", type=int, default=30, help="a fully relayed 6-person room is 30 streams")
    ap.add_argument("--turn-rate", type=int, default=1_000_000, help="bits per second per stream")
    ap.add_argument("--robustness-size", choices=("full", "quick", "tiny"), default="full",
                    help="flood sizes of the robustness part (--quick picks quick)")
    ap.add_argument("--out", default=str(ROOT / "bench-results"))
    args = ap.parse_args(argv)
    args.stacks = [s for s in args.stacks.split(",") if s]
    if args.quick:
        args.ladder = args.ladder or "30,60"
        args.duration, args.memory_connections, args.cycles = 4.0, 60, 2
        args.browser_runs, args.binary_runs, args.turn_duration, args.turn_streams = 1, 1, 3.0, 2
    args.ladder = sorted(int(n) for n in str(args.ladder or "120,300,600,1200,2004").split(",") if n.strip())
    parts = args.parts or [p for p in PARTS]
    raise_nofile(20000)

    results: dict[str, Any] = {"machine": machine(), "started": dt.datetime.now().astimezone().isoformat(
        timespec="seconds"), "args": {k: v for k, v in vars(args).items() if k != "parts"}, "parts": {}}
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "signaling": lambda: part_signaling(args),
        "memory": lambda: part_memory(args),
        "binary": lambda: part_optional("binary_bench", lambda m: m.run(args.binary_runs)),
        "turn": lambda: part_optional("turn_bench",
                                      lambda m: m.run(args.turn_duration, args.turn_streams, args.turn_rate)),
        "browser": lambda: part_browser(args),
        "robustness": lambda: part_robustness(args),
    }
    tables = {"signaling": table_signaling, "memory": table_memory, "browser": table_browser,
              "robustness": table_robustness}
    failed = False
    for part in parts:
        t0 = time.monotonic()
        try:
            results["parts"][part] = runners[part]()
        except Exception as exc:
            failed = True
            log(traceback.format_exc())
            results["parts"][part] = {"failed": f"{type(exc).__name__}: {exc}"[:1000]}
        results["parts"][part]["bench_seconds"] = round(time.monotonic() - t0, 1)
        # What is done so far, in case a long run is cut short.
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "partial.json").write_text(json.dumps(results, indent=1, default=str))

    m = results["machine"]
    lines = [f"Measured {results['started']} on {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, "
             f"Python {m['python']}.", ""]
    for part, out in results["parts"].items():
        lines += [f"### {part}", ""]
        if "failed" in out:
            lines.append(f"- failed: {out['failed']}")
        else:
            lines += tables.get(part, table_generic)({k: v for k, v in out.items() if k != "bench_seconds"})
        lines.append("")
    text = "\n".join(lines)
    print(text)
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in (f"bench-{stamp}", "latest"):
        (outdir / f"{name}.json").write_text(json.dumps(results, indent=1, default=str))
        (outdir / f"{name}.md").write_text(text)
    log(f"wrote {outdir}/bench-{stamp}.json and latest.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
