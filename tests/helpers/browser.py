"""Debian's Chromium through Playwright, with fake camera and microphone.

Browser tests make real peer connections, so they must run inside the private network
namespace that ./scripts/test creates (require_netns fails loudly otherwise)."""

from __future__ import annotations

import os
import socket
import tempfile
from contextlib import contextmanager
from typing import Iterator

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
]


def require_netns() -> None:
    """Fail (never skip) when peer connections could reach a real network."""
    if os.environ.get("MESHCALL_TEST_NETNS") != "1":
        raise AssertionError("peer-connection tests must run in a private network namespace: use ./scripts/test")
    # Ask the kernel for this namespace's interfaces: /sys/class/net shows the namespace that
    # mounted sysfs, which after a plain `unshare --net` is still the host's.
    names = sorted(name for _, name in socket.if_nameindex())
    unexpected = [n for n in names if n != "lo" and not n.startswith(("lan", "veth", "mc"))]
    if unexpected:
        raise AssertionError(f"not in a private network namespace: interfaces {unexpected}")


@contextmanager
def chromium(extra_args: list[str] | None = None) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    require_netns()
    with tempfile.TemporaryDirectory(prefix="meshcall-chromium-") as home:
        os.environ["XDG_CONFIG_HOME"] = home
        os.environ["XDG_CACHE_HOME"] = home
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=CHROMIUM_ARGS + (extra_args or []))
            try:
                yield browser
            finally:
                browser.close()
