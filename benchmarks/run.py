"""The bench driver: run the parts side by side, print a markdown table, write JSON.

    python benchmarks/run.py [signaling|memory|turn|binary|browser ...] [--quick] [options]

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

PARTS = ("signaling", "memory", "binary", "turn", "browser")


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


def held(r: dict[str, Any]) -> bool:
    st = r.get("steady") or {}
    return (r.get("connections") == r["clients"] and st.get("sent", 0) > 0
            and st.get("lost", 1) <= 0.01 * st["sent"] and st.get("achieved_rate", 0) >= 0.95 * r["rate"])


def part_signaling(args: argparse.Namespace) -> dict[str, Any]:
    import signaling_bench as sb

    rounds = [(args.connections, args.rate)]
    if args.compare_connections and args.compare_connections != args.connections:
        rounds.append((args.compare_connections, args.compare_rate))
    out: dict[str, Any] = {"rounds": [], "notes": []}
    for conns, rate in rounds:
        rooms = -(-conns // 6)
        log(f"signaling: {rooms} rooms x 6 = {rooms * 6} clients, {rate:g} relays/s for {args.duration:g}s")
        results = {}
        for stack in args.stacks:
            try:
                results[stack] = sb.run_one(stack, rooms, rate, args.duration, workers=args.workers, log=log)
            except Exception as exc:  # one stack failing must not lose the others' figures
                log(f"  {stack}: FAILED: {exc}")
                results[stack] = {"stack": stack, "rooms": rooms, "clients": rooms * 6, "rate": rate,
                                  "failed": f"{type(exc).__name__}: {exc}"[:500]}
            results[stack]["held"] = held(results[stack]) if "failed" not in results[stack] else False
        out["rounds"].append({"clients": rooms * 6, "rate": rate, "results": results})
    # The headline ratio: the largest round the seed held (same load for all stacks).
    for rnd in out["rounds"]:
        res = rnd["results"]
        m, s, f = (res.get(k, {}) for k in ("meshcall", "seed", "floor"))
        rnd["meshcall_vs_seed_msgs_per_cpu"] = ratio(m.get("steady", {}).get("msgs_per_cpu_s"),
                                                     s.get("steady", {}).get("msgs_per_cpu_s"))
        rnd["meshcall_vs_floor_msgs_per_cpu"] = ratio(m.get("steady", {}).get("msgs_per_cpu_s"),
                                                      f.get("steady", {}).get("msgs_per_cpu_s"))
    return out


def table_signaling(out: dict[str, Any]) -> list[str]:
    rows = ["| stack | held the load | clients held | rate sent/s | delivered | p50 ms | p99 ms | msgs / server CPU-s "
            "| server CPU % | RSS / conn KiB | negotiation burst s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rnd in out["rounds"]:
        for stack, r in rnd["results"].items():
            if "failed" in r:
                rows.append(f"| {stack} | no | failed at {r['clients']} | — | — | — | — | — | — | — | — |")
                continue
            st = r.get("steady", {})
            rows.append(
                f"| {stack} | {'yes' if r.get('held') else '**no**'} | {fmt(r.get('connections'))}/{fmt(r['clients'])} | {fmt(st.get('achieved_rate'), 0)} "
                f"of {fmt(r['rate'], 0)} | {fmt(st.get('received'))}/{fmt(st.get('sent'))} "
                f"| {fmt(st.get('p50_ms'), 2)} | {fmt(st.get('p99_ms'), 1)} | {fmt(st.get('msgs_per_cpu_s'), 0)} "
                f"| {fmt((st.get('server_cpu_util') or 0) * 100, 0)} | {fmt(r.get('rss_per_conn_kib'), 1)} "
                f"| {fmt(r.get('negotiation', {}).get('seconds'), 2)} |")
    rows.append("")
    for rnd in out["rounds"]:
        res = rnd["results"]
        seed_ok = res.get("seed", {}).get("held")
        vs_seed = (f"**{fmt(rnd['meshcall_vs_seed_msgs_per_cpu'], 2)}×**" if seed_ok else
                   "— (the seed did not hold this load: no fair ratio)")
        rows.append(f"- {fmt(rnd['clients'])} clients at {fmt(rnd['rate'], 0)}/s: meshcall ÷ seed in messages per "
                    f"server CPU-second = {vs_seed}; meshcall ÷ floor = "
                    f"**{fmt(rnd['meshcall_vs_floor_msgs_per_cpu'], 2)}×**")
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

    return browser_bench.run(runs=args.browser_runs, log=log)


def table_browser(out: dict[str, Any]) -> list[str]:
    if "skipped" in out:
        return [f"- skipped: {out['skipped']}"]
    rows = ["| scenario | meshcall median s | floor median s | meshcall ÷ floor | runs |", "|---|---|---|---|---|"]
    for name, r in out["scenarios"].items():
        rows.append(f"| {name} | {fmt(r['meshcall_median_s'], 2)} | {fmt(r['floor_median_s'], 2)} "
                    f"| **{fmt(r['ratio'], 2)}×** | {r['runs']} |")
    return rows


# -- main -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", choices=[*PARTS, []], default=[], metavar="PART",
                    help=f"which parts to run (default: all): {', '.join(PARTS)}")
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the bench itself works")
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=5000.0, help="total relays per second in the steady phase")
    ap.add_argument("--compare-connections", type=int, default=120,
                    help="a second, smaller round for all stacks (0: none), in case the seed cannot hold the first")
    ap.add_argument("--compare-rate", type=float, default=600.0)
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of steady relays per stack")
    ap.add_argument("--workers", type=int, default=2, help="load-generator processes")
    ap.add_argument("--stacks", default="meshcall,seed,floor")
    ap.add_argument("--memory-connections", type=int, default=2000)
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--browser-runs", type=int, default=5)
    ap.add_argument("--binary-runs", type=int, default=5)
    ap.add_argument("--turn-duration", type=float, default=10.0)
    ap.add_argument("--turn-streams", type=int, default=30, help="a fully relayed 6-person room is 30 streams")
    ap.add_argument("--turn-rate", type=int, default=1_000_000, help="bits per second per stream")
    ap.add_argument("--out", default=str(ROOT / "bench-results"))
    args = ap.parse_args(argv)
    args.stacks = [s for s in args.stacks.split(",") if s]
    if args.quick:
        args.connections, args.rate, args.compare_connections = 60, 300.0, 0
        args.duration, args.memory_connections, args.cycles = 4.0, 60, 2
        args.browser_runs, args.binary_runs, args.turn_duration, args.turn_streams = 1, 1, 3.0, 2
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
    }
    tables = {"signaling": table_signaling, "memory": table_memory, "browser": table_browser}
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
