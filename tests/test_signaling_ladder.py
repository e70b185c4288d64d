"""The signaling bench's ladder logic, with the load runs replaced by made-up results.

No server starts and no timing is measured: this checks how the bench turns runs into
its verdicts (held, capacity, which stacks go on, which ratios it prints), which is
what a reader of docs/benchmarks.md relies on."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from helpers.procs import ROOT


@pytest.fixture()
def bench(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import run as bench_run
    import signaling_bench

    return bench_run, signaling_bench


def result(stack: str, rooms: int, rate: float, *, p99: float = 5.0, joined: int | None = None,
           lost: int = 0, per_cpu: float = 1000.0) -> dict[str, Any]:
    sent = int(rate * 4)
    return {"stack": stack, "rooms": rooms, "clients": rooms * 6, "rate": rate,
            "connections": rooms * 6 if joined is None else joined,
            "steady": {"sent": sent, "received": sent - lost, "lost": lost, "achieved_rate": rate,
                       "p50_ms": 1.0, "p99_ms": p99, "msgs_per_cpu_s": per_cpu}}


def args(**kw: Any) -> argparse.Namespace:
    base = {"ladder": [120, 300, 600], "per_client_rate": 2.5, "duration": 4.0, "workers": 2,
            "stacks": ["meshcall", "seed", "floor"], "retries": 1}
    return argparse.Namespace(**{**base, **kw})


def test_held_needs_everyone_joined_little_loss_and_a_p99_under_50_ms(bench: Any) -> None:
    run, _ = bench
    assert run.held(result("meshcall", 20, 300.0))
    assert not run.held(result("meshcall", 20, 300.0, p99=50.0))
    assert not run.held(result("meshcall", 20, 300.0, joined=119))
    assert run.held(result("meshcall", 20, 300.0, lost=12))  # 1 % of 1,200
    assert not run.held(result("meshcall", 20, 300.0, lost=13))
    stopped = result("meshcall", 20, 300.0)
    stopped["stopped"] = "steady relays stopped early: seconds of latency"
    assert not run.held(stopped)
    # A miss on the p99 alone is worth another try; lost frames are not.
    assert not run.clearly_failed(result("seed", 20, 300.0, p99=80.0))
    assert run.clearly_failed(result("seed", 20, 300.0, lost=100))


def test_the_ladder_goes_on_after_a_tail_miss_and_stops_after_a_clear_failure(
        bench: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run, sb = bench
    calls: list[tuple[str, int]] = []
    seed_p99 = {120: [10.0], 300: [70.0, 60.0]}  # misses 300 twice on the p99 alone...
    floor_p99 = {120: [80.0, 90.0], 300: [5.0], 600: [5.0], 1200: [5.0]}

    def fake_run_one(stack: str, rooms: int, rate: float, duration: float, workers: int = 2,
                     log: Any = print) -> dict[str, Any]:
        clients = rooms * 6
        calls.append((stack, clients))
        assert rate == pytest.approx(2.5 * clients)
        if stack == "seed":
            if clients == 600:  # ...then cannot take everyone in
                return result(stack, rooms, rate, joined=400)
            return result(stack, rooms, rate, p99=seed_p99[clients].pop(0), per_cpu=500.0)
        if stack == "floor":
            return result(stack, rooms, rate, p99=floor_p99[clients].pop(0), per_cpu=2500.0)
        return result(stack, rooms, rate, per_cpu=2000.0)

    monkeypatch.setattr(sb, "run_one", fake_run_one)
    out = run.part_signaling(args(ladder=[120, 300, 600, 1200]))
    assert calls.count(("seed", 300)) == 2 and calls.count(("seed", 600)) == 1 and ("seed", 1200) not in calls
    assert calls.count(("floor", 120)) == 2 and ("floor", 1200) in calls
    assert out["capacity"] == {"meshcall": 1200, "seed": 120, "floor": 1200}
    assert out["missed_below_capacity"] == {"floor": [120]}
    assert out["capacity_meshcall_vs_seed"] == pytest.approx(10.0)
    by_size = {r["clients"]: r for r in out["rounds"]}
    # Per-CPU ratios only where both stacks held the size.
    assert by_size[120]["meshcall_vs_seed_msgs_per_cpu"] == pytest.approx(4.0)
    assert by_size[120]["meshcall_vs_floor_msgs_per_cpu"] is None
    assert by_size[300]["meshcall_vs_seed_msgs_per_cpu"] is None
    assert by_size[1200]["results"]["seed"]["not_run"]
    assert [t["p99_ms"] for t in by_size[300]["results"]["seed"]["tries"]] == [70.0, 60.0]
    assert out["top_meshcall_vs_floor_msgs_per_cpu"] == pytest.approx(0.8)
    text = "\n".join(run.table_signaling(out))
    assert "capacity meshcall ÷ seed: **≥ 10.00×**" in text  # meshcall held the top: a lower bound
    assert "meshcall ÷ floor in relays per CPU-second: **0.80×**" in text
    assert "floor missed 120 clients on the p99 alone" in text


def test_a_stack_that_cannot_start_does_not_stop_the_others(bench: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run, sb = bench

    def fake_run_one(stack: str, rooms: int, rate: float, duration: float, workers: int = 2,
                     log: Any = print) -> dict[str, Any]:
        if stack == "seed":
            raise RuntimeError("seed did not answer")
        return result(stack, rooms, rate)

    monkeypatch.setattr(sb, "run_one", fake_run_one)
    out = run.part_signaling(args(ladder=[120, 300]))
    assert out["capacity"] == {"meshcall": 300, "seed": 0, "floor": 300}
    assert "failed" in out["rounds"][0]["results"]["seed"]
    assert "the seed held no size" in "\n".join(run.table_signaling(out))


def test_the_seed_runs_its_production_command_with_the_mode_pinned(bench: Any) -> None:
    _, sb = bench
    assert sb.SEED_MODES == {"seed": "gevent", "seed-threading": "threading"}
    argv = sb.gunicorn_argv(8443, ROOT / "c.pem", ROOT / "k.pem", ROOT)
    assert argv[1:3] == ["-m", "gunicorn"]
    assert argv[argv.index("--worker-class") + 1] == "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"
    assert argv[argv.index("--workers") + 1] == "1"
    assert argv[argv.index("--certfile") + 1].endswith("c.pem") and argv[argv.index("--keyfile") + 1].endswith("k.pem")
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:8443"
    assert argv[-1] == 'seed_flask_socketio:create_app("gevent")'
