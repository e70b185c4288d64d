"""meshcall's memory: idle, holding N joined silent connections, after they leave, and
after repeated join/leave cycles (a leak check: RSS after each cycle should level off)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_seconds, meshcall_server, raise_nofile, rss_bytes  # noqa: E402
from loadgen import LoadGen  # noqa: E402

MIB = 2**20


def run(connections: int = 2000, cycles: int = 5, hold: float = 5.0, workers: int = 2, log=print) -> dict[str, Any]:
    raise_nofile(20000)
    rooms = max(1, -(-connections // 6))
    out: dict[str, Any] = {"connections_wanted": rooms * 6, "cycles": []}
    with tempfile.TemporaryDirectory(prefix="meshcall-bench-mem-") as tmp:
        with meshcall_server(Path(tmp) / "data") as srv:
            time.sleep(1.0)
            out["rss_idle_mib"] = rss_bytes(srv.pid) / MIB
            with LoadGen("ws", f"wss://127.0.0.1:{srv.port}/ws", rooms, workers) as lg:
                for cycle in range(1, cycles + 1):
                    c0 = cpu_seconds(srv.pid)
                    res = lg.run("join", 240.0, timeout=300)
                    joined = sum(r["joined"] for r in res)
                    time.sleep(hold)  # silent: only the server's 3 s WebSocket pings
                    rss_held = rss_bytes(srv.pid) / MIB
                    hold_cpu = cpu_seconds(srv.pid) - c0
                    lg.run("leave", 120.0, timeout=180)
                    time.sleep(1.5)
                    rss_after = rss_bytes(srv.pid) / MIB
                    row = {"cycle": cycle, "joined": joined, "rss_held_mib": rss_held,
                           "rss_after_leave_mib": rss_after, "server_cpu_s": hold_cpu,
                           "errors": [e for r in res for e in r["errors"]][:3]}
                    out["cycles"].append(row)
                    log(f"  memory cycle {cycle}: {joined} joined, RSS held {rss_held:.1f} MiB, "
                        f"after leave {rss_after:.1f} MiB")
            first = out["cycles"][0]
            out["rss_held_mib"] = first["rss_held_mib"]
            out["rss_after_leave_mib"] = first["rss_after_leave_mib"]
            out["rss_per_conn_kib"] = (first["rss_held_mib"] - out["rss_idle_mib"]) * 1024 / max(first["joined"], 1)
            afters = [c["rss_after_leave_mib"] for c in out["cycles"]]
            out["growth_after_first_cycle_mib"] = afters[-1] - afters[0]
    return out
