"""dist/meshcall, rebuilt with ./scripts/build when missing or older than its sources.

Shared by the executable's tests and its benchmark, so both measure the current code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .procs import ROOT

EXE = ROOT / "dist" / ("meshcall.exe" if os.name == "nt" else "meshcall")
# Everything the executable is made from: a newer file here means a rebuild.
SOURCES = [ROOT / "meshcall", ROOT / "assets", ROOT / "build.spec", ROOT / "pyproject.toml", ROOT / "scripts" / "build"]
BUILD_TIMEOUT = 600


def newest_source_mtime() -> float:
    """The newest modification time among the sources (cheap: stat only, no hashing)."""
    newest = 0.0
    for top in SOURCES:
        if top.is_file():
            newest = max(newest, top.stat().st_mtime)
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for name in filenames:
                if not name.endswith((".pyc", ".pyo")):
                    newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
    return newest


def ensure_executable() -> Path:
    """Build when missing or stale, with this interpreter (it has the [build] extra): tests
    and benchmarks run in a network namespace, where scripts/build could not make its own
    venv. Raises RuntimeError with the build's output when it fails."""
    if not EXE.is_file() or EXE.stat().st_mtime < newest_source_mtime():
        res = subprocess.run([str(ROOT / "scripts" / "build")], cwd=ROOT, capture_output=True, text=True,
                             timeout=BUILD_TIMEOUT, env={**os.environ, "BUILD_PYTHON": sys.executable})
        if res.returncode != 0 or not EXE.is_file():
            raise RuntimeError(f"./scripts/build failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return EXE
