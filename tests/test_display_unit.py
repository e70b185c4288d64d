"""deploy/meshcall-display.service, the systemd user unit of a room display, as systemd
reads it, and with the kiosk flags the README names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "meshcall-display.service"


def test_the_room_display_unit_verifies() -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian package systemd)"
    res = subprocess.run([analyze, "verify", str(UNIT)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr


def test_the_room_display_unit_runs_a_kiosk_that_never_gives_up() -> None:
    unit = UNIT.read_text()
    for flag in ("--kiosk", "--autoplay-policy=no-user-gesture-required", "--noerrdialogs"):
        assert flag in unit, flag
    assert "/r/boardroom?display=1" in unit
    assert "\nRestart=always\n" in unit
    readme = (ROOT / "README.md").read_text()
    assert "deploy/meshcall-display.service" in readme and "--noerrdialogs" in readme
