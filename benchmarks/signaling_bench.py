"""Signaling under load: meshcall, the seed's Flask-SocketIO stack and the floor, side by side.

N rooms x 6 clients in separate load-generator processes over loopback TLS: join, one full
negotiation burst (offer ~5 KB / answer / 8 candidates each way for every pair), then
steady timed relays at a fixed total rate. Server CPU from /proc/<pid>/stat, RSS from
/proc/<pid>/statm; latency measured at the receiver from the sender's timestamp."""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PYTHON, Server, cpu_seconds, free_port, meshcall_server, raise_nofile, rss_bytes, test_certificate, thread_count  # noqa: E402
from loadgen import LoadGen  # noqa: E402

HERE = Path(__file__).resolve().parent

STACKS = {
    "meshcall": "meshcall (Tornado, TLS)",
    "floor": "floor: bare `websockets` asyncio relay (TLS)",
    "seed": "seed: Flask-SocketIO, threading mode + simple-websocket, Werkzeug (TLS)",
}


def percentile(sorted_ns: list[int], q: float) -> float | None:
    if not sorted_ns:
        return None
    k = min(len(sorted_ns) - 1, max(0, math.ceil(q * len(sorted_ns)) - 1))
    return sorted_ns[k] / 1e6


def make_server(stack: str, data_dir: Path) -> tuple[Server, str, str]:
    if stack == "meshcall":
        srv = meshcall_server(data_dir / "meshcall")
        return srv, "ws", f"wss://127.0.0.1:{srv.port}/ws"
    cert, key = test_certificate(data_dir / "ref")
    port = free_port()
    if stack == "floor":
        argv = [PYTHON, str(HERE / "floor_ws.py"), "--port", str(port), "--cert", str(cert), "--key", str(key)]
        return Server("floor", argv, port, True, "/healthz"), "ws", f"wss://127.0.0.1:{port}/ws"
    argv = [PYTHON, str(HERE / "seed_flask_socketio.py"), "--port", str(port), "--cert", str(cert), "--key", str(key)]
    return Server("seed", argv, port, True, "/healthz"), "sio", f"https://127.0.0.1:{port}"


def run_one(stack: str, rooms: int, rate: float, duration: float, workers: int = 2,
            log=print) -> dict[str, Any]:
    raise_nofile(20000)
    out: dict[str, Any] = {"stack": stack, "what": STACKS[stack], "rooms": rooms, "clients": rooms * 6,
                           "rate": rate, "duration": duration}
    with tempfile.TemporaryDirectory(prefix="meshcall-bench-") as tmp:
        srv, kind, url = make_server(stack, Path(tmp))
        with srv:
            pid = srv.pid
            time.sleep(0.5)
            out["rss_idle_mib"] = rss_bytes(pid) / 2**20
            with LoadGen(kind, url, rooms, workers) as lg:
                c0 = cpu_seconds(pid)
                res = lg.run("join", 240.0, timeout=300)
                joined = sum(r["joined"] for r in res)
                out["connections"] = joined
                out["join_seconds"] = max(r["seconds"] for r in res)
                out["join_cpu_s"] = cpu_seconds(pid) - c0
                out["errors"] = [e for r in res for e in r["errors"]][:5]
                time.sleep(1.0)
                rss = rss_bytes(pid)
                out["rss_loaded_mib"] = rss / 2**20
                out["rss_per_conn_kib"] = (rss - out["rss_idle_mib"] * 2**20) / max(joined, 1) / 1024
                out["server_threads"] = thread_count(pid)
                log(f"  {stack}: {joined}/{rooms * 6} connections joined in {out['join_seconds']:.1f}s")

                c0 = cpu_seconds(pid)
                res = lg.run("negotiate", 60.0, timeout=120)
                neg_cpu = cpu_seconds(pid) - c0
                got, want = sum(r["received"] for r in res), sum(r["expected"] for r in res)
                out["negotiation"] = {"frames": got, "expected": want, "seconds": max(r["seconds"] for r in res),
                                      "frames_per_cpu_s": got / neg_cpu if neg_cpu else None}
                log(f"  {stack}: negotiation burst {got}/{want} frames in {out['negotiation']['seconds']:.1f}s")
                time.sleep(1.0)

                c0, t0 = cpu_seconds(pid), time.monotonic()
                wc0 = sum(cpu_seconds(p) for p in lg.pids)
                per_worker = rate / len(lg.pids)
                res = lg.run("steady", per_worker, duration, time.time() + 0.5, timeout=duration * 2 + 60)
                cpu = cpu_seconds(pid) - c0
                wall = time.monotonic() - t0
                sent = sum(r["sent"] for r in res)
                received = sum(r["received"] for r in res)
                samples = sorted(s for r in res for s in r["samples"])
                send_seconds = max(r["send_seconds"] for r in res)
                out["steady"] = {
                    "sent": sent, "received": received, "lost": sent - received,
                    "achieved_rate": sent / send_seconds if send_seconds else 0.0,
                    "p50_ms": percentile(samples, 0.50), "p99_ms": percentile(samples, 0.99),
                    "max_ms": samples[-1] / 1e6 if samples else None,
                    "server_cpu_s": cpu, "wall_s": wall, "server_cpu_util": cpu / wall if wall else None,
                    "msgs_per_cpu_s": received / cpu if cpu else None,
                    "client_cpu_s": sum(cpu_seconds(p) for p in lg.pids) - wc0,
                }
                out["errors"] += [e for r in res for e in r["errors"]][:5]
                st = out["steady"]
                log(f"  {stack}: steady {received}/{sent} at {st['achieved_rate']:.0f}/s, p50 {st['p50_ms']} ms, "
                    f"p99 {st['p99_ms']} ms, {st['msgs_per_cpu_s'] or 0:.0f} msg/CPU-s")
                res = lg.run("leave", 60.0, timeout=90)
                time.sleep(1.0)
                out["rss_after_leave_mib"] = rss_bytes(pid) / 2**20
    return out
