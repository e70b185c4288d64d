"""The robustness bench at a tiny size, so that it cannot rot unnoticed.

Figures (latencies, memory, CPU) are reported by the bench and never asserted here; what
is asserted is that every shape ran and did what the protocol says the server does to it."""

from __future__ import annotations

import sys

import pytest

from helpers.procs import ROOT

pytestmark = pytest.mark.slow


def test_robustness_bench_runs_tiny() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import robustness_bench
        import run as bench_run
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    result = robustness_bench.run("tiny", log=lambda _: None)
    shapes = result["shapes"]
    assert list(shapes) == list(robustness_bench.SHAPES)
    for name, r in shapes.items():
        assert "failed" not in r["flood"], (name, r["flood"])
        assert r["pair"]["sent"] > 0 and r["pair"]["received"] > 0, (name, r["pair"])
        assert r["pair"]["trouble"] == [], (name, r["pair"])
        assert r["tracebacks"] == [], (name, r["tracebacks"])
        assert r["server"]["alive"] and r["server"]["rss_peak_mib"] >= r["server"]["rss_before_mib"] > 0
    assert result["server_alive_at_end"]
    assert shapes["quiet"]["pair"]["lost"] == 0, shapes["quiet"]["pair"]

    idle = shapes["idle"]["flood"]
    assert idle["tries"] >= idle["slots"] and sum(idle["outcomes"].values()) == idle["tries"], idle
    assert idle["most_open_at_once"] > 0, idle
    dribble = shapes["dribble"]["flood"]
    assert dribble["header_bytes_sent"] > 0 and sum(dribble["outcomes"].values()) == dribble["tries"], dribble
    # Pings count against the frame rate limit: a flooding connection is closed with 4429
    # (the last one may still be sending when the window ends).
    pings = shapes["pings"]["flood"]
    assert pings["pings_sent"] > 400 and "4429" in pings["connections_ended_by"], pings
    assert set(pings["connections_ended_by"]) <= {"4429", "still open at the end"}, pings
    # A member that never reads is dropped (too-slow, 4408), and its senders are not.
    sink = shapes["sink"]["flood"]
    assert sink["sink"].startswith("closed") and sink["server_said"]["too-slow"] == 1, sink
    assert sink["senders_closed"] == 0, sink
    rooms = shapes["rooms"]["flood"]
    assert rooms["outcomes"].get("welcome", 0) > 0, rooms
    # A lone surrogate is removed from a display name, never relayed, never a crash.
    surrogate = shapes["surrogate"]["flood"]
    assert surrogate["welcomes"] > 1 and surrogate["names_shown"] == ["evil"], surrogate

    table = bench_run.table_robustness(result)
    for name in robustness_bench.SHAPES:
        assert any(row.startswith(f"| {name} |") for row in table), table
