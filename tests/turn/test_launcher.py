"""`python -m meshcall.turn` as a subprocess, and the benchmark harness at a tiny scale."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

from meshcall import settings
from meshcall.turn.__main__ import parse_args
from meshcall.turn.config import TurnConfig
from meshcall.turn.selfcheck import self_check

from .conftest import Processes, require_coturn

ROOT = Path(__file__).resolve().parents[2]


def test_launcher_serves_and_stops_on_sigterm(processes: Processes) -> None:
    proc = processes.start(
        [sys.executable, "-m", "meshcall.turn", "--listen", "127.0.0.1", "--port", "0", "--secret", "s",
         "--allow-loopback-peers", "--min-port", "45000", "--max-port", "45100"],
        cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    port = json.loads(line)["port"]
    ok, message = asyncio.run(self_check("127.0.0.1", port, b"s"))
    assert ok, message
    relayed_port = int(message.split(":")[2].split(",")[0])
    assert 45000 <= relayed_port <= 45100
    os.killpg(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, output
    stats = json.loads(output.strip().splitlines()[-1])
    assert stats["allocations_total"] == 1 and stats["packets_to_peers"] == 1


def test_launcher_port_taken_exits_with_message(processes: Processes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        output = processes.run(
            [sys.executable, "-m", "meshcall.turn", "--listen", "127.0.0.1", "--port", str(port), "--secret", "s"],
            timeout=30,
        )
    assert f"cannot bind UDP 127.0.0.1 port {port}" in output
    assert processes.procs[-1].returncode == 1


def test_benchmark_harness_runs_small() -> None:
    require_coturn()
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import turn_bench
    finally:
        sys.path.remove(str(ROOT))
    result = turn_bench.run(duration=0.5, streams=2, rate_bps=200_000)
    # Both servers, both shapes (one allocation per packet, and relay to relay).
    for name in ("meshcall_sink", "coturn_sink", "meshcall_room", "coturn_room"):
        assert result[name]["packets_sent"] > 0, name
        assert result[name]["packets_relayed"] > 0, name
    assert result["meshcall_packets_per_cpu_second"] == result["meshcall_sink"]["packets_per_cpu_second"]
    for figure in ("meshcall_vs_coturn_efficiency", "meshcall_cpu_share_of_one_core", "room_meshcall_cpu_share_of_one_core"):
        assert figure in result, figure
    assert result["targets"] == {"efficiency": 0.5, "cpu_share_of_one_core": 0.1}


def test_launcher_and_appliance_share_one_default_per_setting() -> None:
    args = parse_args(["--listen", "127.0.0.1", "--secret", "s"])
    config = TurnConfig(listen=["127.0.0.1"])
    pairs = [
        ("port", "port", "turn_port"),
        ("min_port", "relay_min_port", "relay_min_port"),
        ("max_port", "relay_max_port", "relay_max_port"),
        ("allow_loopback_peers", "allow_loopback_peers", "turn_allow_loopback"),
        ("max_allocations", "max_allocations", "turn_max_allocations"),
        ("max_allocations_per_user", "max_allocations_per_user", "turn_max_allocations_per_user"),
    ]
    for flag, field_name, setting in pairs:
        expected = settings.BY_NAME[setting].default
        assert getattr(args, flag) == getattr(config, field_name) == expected, setting
    assert args.bandwidth == config.bandwidth_per_allocation and args.realm == config.realm
