"""Slow devices and a busy machine for the browser tests: CPU-throttled pages (the DevTools
protocol's Emulation.setCPUThrottlingRate, like a phone or an old laptop next to this
machine) and a process that keeps one core busy."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from typing import Any, Iterator


def throttled_page(context: Any, rate: float) -> Any:
    """A new page of `context` whose CPU runs `rate` times slower (set before any load)."""
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": rate})
    return page


@contextmanager
def busy_core() -> Iterator[subprocess.Popen[bytes]]:
    """One process spinning on a core for as long as the block runs (killed on the way out)."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)
