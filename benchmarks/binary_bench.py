"""The one-file executable: its size and how fast it answers after being started.

    python benchmarks/binary_bench.py [RUNS]     # prints JSON (rebuilds dist/meshcall first
                                                 # when it is missing or older than its sources)

What is timed: from starting the process to the first 200 from GET /healthz over HTTPS,
polled every 10 ms. Each run gets a fresh data dir that was initialised by one earlier
start, so the certificate authority and the certificate already exist: the figure is
start-up, not key generation. TURN is off (--no-turn) so the relay's self-check is not
part of it. The disk cache is warm after the first run: this is a cold *process* start
(for the executable: unpacking itself into $TMPDIR/_MEI*, loading Python from there).
`python -m meshcall` is measured the same way for comparison.

Targets: size <= 30 MB, start <= 1 s. Everything listens on 127.0.0.1 only; every process
is stopped with SIGTERM by its PID and reaped."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import free_port, insecure_context  # noqa: E402
from helpers.executable import ensure_executable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE_TARGET_MB = 30.0
START_TARGET_S = 1.0
POLL_S = 0.01


def _start_and_time(command: Sequence[str], data_dir: Path, tmpdir: Path, timeout: float = 30) -> float:
    """Start meshcall, return seconds until /healthz answers over HTTPS, then stop it."""
    port = free_port()
    args = [*command, "--host", "127.0.0.1", "--port", str(port), "--http-port", "0", "--no-turn",
            "--data-dir", str(data_dir), "--log-level", "warning"]
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    ctx = insecure_context()
    url = f"https://127.0.0.1:{port}/healthz"
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            while True:
                if proc.poll() is not None:
                    out.seek(0)
                    raise RuntimeError(f"{command[0]} exited with {proc.returncode}: {out.read().decode()[-2000:]}")
                try:
                    with urllib.request.urlopen(url, context=ctx, timeout=1) as resp:
                        if resp.status == 200:
                            elapsed = time.perf_counter() - t0
                            break
                except OSError:
                    pass
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"{command[0]} did not answer within {timeout}s")
                time.sleep(POLL_S)
        finally:
            # SIGTERM only: SIGKILL on the one-file launcher would orphan meshcall itself.
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
    return elapsed


def measure(command: Sequence[str], runs: int) -> dict[str, object]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="meshcall-bench-") as tmp:
            data, tmpdir = Path(tmp) / "data", Path(tmp) / "tmp"
            tmpdir.mkdir()
            _start_and_time(command, data, tmpdir)  # initialise: CA and certificate made here
            times.append(_start_and_time(command, data, tmpdir))
            leftovers = list(tmpdir.glob("_MEI*"))
            if leftovers:
                raise RuntimeError(f"unpack dirs left behind: {leftovers}")
    return {"start_s_median": round(statistics.median(times), 3), "start_s_min": round(min(times), 3),
            "start_s_max": round(max(times), 3), "runs": runs}


def run(runs: int = 7) -> dict:
    exe = ensure_executable()
    size = exe.stat().st_size
    binary = {"path": str(exe.relative_to(ROOT)), "size_mb": round(size / 1e6, 2),
              "size_mib": round(size / 2**20, 2), **measure([str(exe)], runs)}
    module = measure([sys.executable, "-m", "meshcall"], runs)
    return {
        "measures": "seconds from process start to the first HTTPS 200 from /healthz; data dir already "
                    "initialised (no key generation), --no-turn, warm disk cache",
        "binary": binary,
        "python_module": module,
        "binary_vs_module": round(binary["start_s_median"] / module["start_s_median"], 2),  # type: ignore[operator]
        "targets": {"size_mb": SIZE_TARGET_MB, "start_s": START_TARGET_S},
        "meets_targets": binary["size_mb"] <= SIZE_TARGET_MB  # type: ignore[operator]
        and binary["start_s_median"] <= START_TARGET_S,  # type: ignore[operator]
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 7), indent=2))
