"""The suite cleans up after itself when it is ended from outside, not only on failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# A test whose fixture starts a process (the way servers and busy loops are started) and
# then waits until the run is ended.
BLOCKING_TEST = textwrap.dedent("""
    import subprocess, sys, time
    from pathlib import Path

    import pytest

    @pytest.fixture
    def child():
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        Path("child.pid").write_text(str(proc.pid))
        try:
            yield proc
        finally:
            proc.kill()
            proc.wait(10)

    def test_waits(child):
        time.sleep(120)
""")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not yet reaped by its parent counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def test_a_sigterm_to_the_run_still_stops_what_its_fixtures_started(tmp_path: Path) -> None:
    (tmp_path / "test_blocking.py").write_text(BLOCKING_TEST)
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "helpers.sigterm", "-p", "no:cacheprovider",
                            "test_blocking.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    child = None
    try:
        deadline = time.monotonic() + 60
        pid_file = tmp_path / "child.pid"
        while not (pid_file.exists() and pid_file.read_text()):
            assert run.poll() is None, run.stdout.read().decode() if run.stdout else ""
            assert time.monotonic() < deadline, "the test never started its child"
            time.sleep(0.1)
        child = int(pid_file.read_text())
        assert alive(child)
        run.send_signal(signal.SIGTERM)
        out = run.communicate(timeout=60)[0].decode()
        assert "KeyboardInterrupt" in out, out
        assert not alive(child), "the fixture's process outlived the run"
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
        if child is not None and alive(child):
            os.kill(child, signal.SIGKILL)
