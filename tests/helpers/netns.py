"""A test "LAN" inside the private network namespace: a veth pair with 198.18.0.x
addresses (RFC 2544 benchmarking range), so nothing here is loopback and nothing can
leave the namespace."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from typing import Iterator

from .browser import require_netns


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextmanager
def private_lan(name: str = "lan0", prefix: str = "198.18.0") -> Iterator[tuple[str, str]]:
    """Yields the two addresses of the LAN (both ends live in this namespace)."""
    require_netns()
    peer = name + "p"
    _ip("link", "add", name, "type", "veth", "peer", "name", peer)
    try:
        for dev, host in ((name, 1), (peer, 2)):
            # No IPv6 autoconfiguration: a late address change makes Chromium drop requests.
            _ip("link", "set", dev, "addrgenmode", "none")
            _ip("addr", "add", f"{prefix}.{host}/24", "dev", dev)
            _ip("link", "set", dev, "up")
        yield f"{prefix}.1", f"{prefix}.2"
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
