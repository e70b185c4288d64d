"""Where things are: the front-end assets and the data directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs


def asset_dir() -> Path:
    """The front end, wherever meshcall runs from: a PyInstaller bundle, a source
    checkout (top-level assets/), or an installed package (meshcall/assets)."""
    bundle = getattr(sys, "_MEIPASS", None)
    candidates = []
    if bundle:
        candidates.append(Path(bundle) / "assets")
    here = Path(__file__).resolve().parent
    candidates += [here.parent / "assets", here / "assets"]
    for path in candidates:
        if (path / "index.html").is_file():
            return path
    raise FileNotFoundError("meshcall's front-end files are missing (looked in: "
                            + ", ".join(str(c) for c in candidates) + ")")


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("meshcall", appauthor=False))


class DataDirError(Exception):
    """The data directory cannot be created or used; the message is for the user."""


def prepare_data_dir(path: Path) -> Path:
    """Create the data dir private to this user (0700) and check it is writable."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.name == "posix":
            os.chmod(path, 0o700)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DataDirError(f"data dir {path}: {reason}") from None
    return path
