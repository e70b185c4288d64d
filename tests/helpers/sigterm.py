"""A run ended from outside (a CI time limit, `kill`) unwinds like Ctrl-C.

By default SIGTERM ends pytest at once, and the servers, browsers and busy loops that
fixtures and `with` blocks started are left running. Raised as KeyboardInterrupt, it runs
every teardown on the way out, as an interrupted run does."""

from __future__ import annotations

import signal
from types import FrameType

import pytest


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionstart(session: pytest.Session) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
