"""The front end's unit tests (tests/js, Node's built-in test runner): the call and the
negotiation rules against fake peer connections, without a browser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_front_end_unit_tests_pass() -> None:
    node = shutil.which("node")
    assert node is not None, "node is not installed (./scripts/test installs nodejs)"
    res = subprocess.run([node, "--test", "tests/js/"], cwd=ROOT, capture_output=True, text=True, timeout=600)  # a hang guard, not a timing
    assert res.returncode == 0, res.stdout + res.stderr
    # An empty run passes too: make sure the tests were found and run.
    assert "# pass 0" not in res.stdout and "# tests 0" not in res.stdout, res.stdout
