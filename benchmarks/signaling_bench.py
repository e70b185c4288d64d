"""Signaling under load: meshcall, the seed's production stack and the floor, side by side.

N rooms x 6 clients in separate load-generator processes over loopback TLS: join, one full
negotiation burst (offer ~5 KB / answer / 8 candidates each way for every pair), then
steady timed relays at a fixed total rate. Server CPU from /proc/<pid>/stat, RSS from
/proc/<pid>/statm (summed over the server's process tree: gunicorn's worker is a child);
latency measured at the receiver from the sender's timestamp."""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PYTHON, Process, free_port, insecure_context, meshcall_server, process_tree, raise_nofile, reference_server, test_certificate, tree_cpu_seconds, tree_rss_bytes, tree_thread_count  # noqa: E402
from loadgen import LoadGen  # noqa: E402

HERE = Path(__file__).resolve().parent

STACKS = {
    "meshcall": "meshcall (Tornado, TLS)",
    "floor": "floor: bare `websockets` asyncio relay (TLS)",
    "seed": "seed, as deployed: Flask-SocketIO in gevent mode under gunicorn's gevent-websocket worker, "
            "1 worker (TLS)",
    "seed-threading": "seed variant: Flask-SocketIO in threading mode + simple-websocket on Werkzeug (TLS)",
}
# The async mode each seed variant pins (checked against /healthz before measuring).
SEED_MODES = {"seed": "gevent", "seed-threading": "threading"}


def gunicorn_argv(port: int, cert: Path, key: Path, run_dir: Path) -> list[str]:
    """The seed's production command (its systemd unit, Procfile and Dockerfile), on loopback."""
    argv = [PYTHON, "-m", "gunicorn", "--worker-class", "geventwebsocket.gunicorn.workers.GeventWebSocketWorker",
            "--workers", "1", "--bind", f"127.0.0.1:{port}", "--certfile", str(cert), "--keyfile", str(key),
            "--pythonpath", str(HERE), "--log-level", "warning"]
    try:
        from gunicorn import config
    except ImportError:  # not installed: the command still reads right, and fails at start
        config = None
    if config is not None and any(s.name == "control_socket" for s in config.KNOWN_SETTINGS):
        # Newer gunicorn opens a control socket in $HOME; keep each run's to itself.
        argv += ["--control-socket", str(run_dir / "gunicorn.ctl")]
    return argv + ['seed_flask_socketio:create_app("gevent")']


def percentile(sorted_ns: list[int], q: float) -> float | None:
    if not sorted_ns:
        return None
    k = min(len(sorted_ns) - 1, max(0, math.ceil(q * len(sorted_ns)) - 1))
    return sorted_ns[k] / 1e6


def make_server(stack: str, data_dir: Path) -> tuple[Process, str, str]:
    if stack == "meshcall":
        srv = meshcall_server(data_dir / "meshcall")
        return srv, "ws", f"wss://127.0.0.1:{srv.port}/ws"
    # The reference stacks get the same kind of chain as meshcall (its CA + leaf).
    cert, key = test_certificate(data_dir / "ref")
    port = free_port()
    if stack == "floor":
        argv = [PYTHON, str(HERE / "floor_ws.py"), "--port", str(port), "--cert", str(cert), "--key", str(key)]
        return reference_server("floor", argv, port), "ws", f"wss://127.0.0.1:{port}/ws"
    if stack == "seed":
        return reference_server("seed", gunicorn_argv(port, cert, key, data_dir), port), "sio", f"https://127.0.0.1:{port}"
    if stack == "seed-threading":
        argv = [PYTHON, str(HERE / "seed_flask_socketio.py"), "--port", str(port), "--cert", str(cert), "--key", str(key)]
        return reference_server("seed-threading", argv, port), "sio", f"https://127.0.0.1:{port}"
    raise ValueError(f"unknown stack {stack!r}; known: {', '.join(STACKS)}")


def healthz(srv: Process) -> dict[str, Any]:
    with urllib.request.urlopen(srv.url + "/healthz", context=insecure_context(), timeout=10) as resp:
        return json.loads(resp.read())


def check_seed(stack: str, srv: Process, after_join: bool) -> dict[str, Any]:
    """The seed variants say which async mode and WebSocket transport they ran: a bench of
    the wrong stack must fail, not print figures."""
    h = healthz(srv)
    want = SEED_MODES[stack]
    if h.get("async_mode") != want:
        raise RuntimeError(f"{stack}: Flask-SocketIO runs in {h.get('async_mode')!r} mode, not {want!r}")
    transports = h.get("websocket_transports", {})
    if after_join and stack == "seed" and set(transports) != {"gevent-websocket"}:
        raise RuntimeError(f"{stack}: WebSockets did not go through gevent-websocket's handler: {transports}")
    return h


def dropped_peers(log_text: str) -> dict[str, int]:
    """Why meshcall removed peers before the leave phase, from its log ("left (why)"): a
    frame that was lost usually went with a peer the server dropped (timeout, too-slow)."""
    import re

    counts: dict[str, int] = {}
    for why in re.findall(r": left \(([^)]*)\)", log_text):
        counts[why] = counts.get(why, 0) + 1
    return counts


def join_timeout(clients: int) -> float:
    """Seconds the join phase may take: generous for a loaded machine, bounded."""
    return min(240.0, 60.0 + 0.06 * clients)


def run_one(stack: str, rooms: int, rate: float, duration: float, workers: int = 2,
            log=print) -> dict[str, Any]:
    """One stack at one size. A run that clearly fails stops early and says why in
    `stopped`: a client that cannot join (the size cannot be held then), or a steady phase
    whose frames in flight show latencies of seconds."""
    from common import cpu_seconds

    raise_nofile(20000)
    out: dict[str, Any] = {"stack": stack, "what": STACKS[stack], "rooms": rooms, "clients": rooms * 6,
                           "rate": rate, "duration": duration}
    with tempfile.TemporaryDirectory(prefix="meshcall-bench-") as tmp:
        srv, kind, url = make_server(stack, Path(tmp))
        with srv:
            pid = srv.pid
            time.sleep(0.5)
            if stack in SEED_MODES:
                out["async_mode"] = check_seed(stack, srv, after_join=False)["async_mode"]
            tree0 = set(process_tree(pid))
            out["rss_idle_mib"] = tree_rss_bytes(pid) / 2**20
            with LoadGen(kind, url, rooms, workers) as lg:
                c0 = tree_cpu_seconds(pid)
                limit = join_timeout(rooms * 6)
                res = lg.run("join", limit, timeout=limit + 60)
                joined = sum(r["joined"] for r in res)
                out["connections"] = joined
                out["join_seconds"] = max(r["seconds"] for r in res)
                out["join_cpu_s"] = tree_cpu_seconds(pid) - c0
                out["errors"] = [e for r in res for e in r["errors"]][:5]
                time.sleep(1.0)
                rss = tree_rss_bytes(pid)
                out["rss_loaded_mib"] = rss / 2**20
                out["rss_per_conn_kib"] = (rss - out["rss_idle_mib"] * 2**20) / max(joined, 1) / 1024
                out["server_threads"] = tree_thread_count(pid)
                log(f"  {stack}: {joined}/{rooms * 6} connections joined in {out['join_seconds']:.1f}s")
                if stack in SEED_MODES and joined:
                    out["websocket_transports"] = check_seed(stack, srv, after_join=True)["websocket_transports"]
                if joined < rooms * 6:
                    out["stopped"] = f"{rooms * 6 - joined} clients could not join"
                    log(f"  {stack}: stopped: {out['stopped']}")
                    return out

                c0 = tree_cpu_seconds(pid)
                res = lg.run("negotiate", 60.0, timeout=120)
                neg_cpu = tree_cpu_seconds(pid) - c0
                got, want = sum(r["received"] for r in res), sum(r["expected"] for r in res)
                out["negotiation"] = {"frames": got, "expected": want, "seconds": max(r["seconds"] for r in res),
                                      "frames_per_cpu_s": got / neg_cpu if neg_cpu else None}
                log(f"  {stack}: negotiation burst {got}/{want} frames in {out['negotiation']['seconds']:.1f}s")
                time.sleep(1.0)

                c0, t0 = tree_cpu_seconds(pid), time.monotonic()
                wc0 = sum(cpu_seconds(p) for p in lg.pids)
                per_worker = rate / len(lg.pids)
                res = lg.run("steady", per_worker, duration, time.time() + 0.5, timeout=duration * 2 + 60)
                cpu = tree_cpu_seconds(pid) - c0
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
                if any(r.get("gave_up") for r in res):
                    out["stopped"] = "steady relays stopped early: seconds of latency"
                out["errors"] += [e for r in res for e in r["errors"]][:5]
                st = out["steady"]
                log(f"  {stack}: steady {received}/{sent} at {st['achieved_rate']:.0f}/s, p50 {st['p50_ms']} ms, "
                    f"p99 {st['p99_ms']} ms, {st['msgs_per_cpu_s'] or 0:.0f} msg/CPU-s"
                    + (f" ({out['stopped']})" if "stopped" in out else ""))
                # A gunicorn worker killed (e.g. by its heartbeat timeout) and replaced takes
                # its CPU seconds with it: such a run's per-CPU figure would flatter it.
                out["server_restarted"] = bool(set(process_tree(pid)) - tree0)
                if stack == "meshcall":
                    out["peers_dropped"] = dropped_peers(srv.output())
                res = lg.run("leave", 60.0, timeout=90)
                time.sleep(1.0)
                out["rss_after_leave_mib"] = tree_rss_bytes(pid) / 2**20
    return out
