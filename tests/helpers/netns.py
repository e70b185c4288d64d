"""A test "LAN" inside the private network namespace: a veth pair with 198.18.0.x
addresses (RFC 2544 benchmarking range), so nothing here is loopback and nothing can
leave the namespace."""

from __future__ import annotations

import os
import signal
import subprocess
import time
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


@contextmanager
def other_machine(device: str, address: str) -> Iterator[list[str]]:
    """A second machine on the test LAN: a network namespace of its own that takes over
    `device` (one end of a veth pair) with `address`/24. Yields the command prefix that
    runs a program there. The namespace lives as long as a `sleep` we start and kill;
    the device goes with it."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "600"])
    try:
        ns = ["nsenter", "-t", str(holder.pid), "-n"]
        deadline = time.monotonic() + 5
        # unshare execs sleep once the namespace exists: wait until it differs from ours.
        while os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            if time.monotonic() > deadline:
                raise RuntimeError("the second namespace did not come up")
            time.sleep(0.01)
        _ip("link", "set", device, "netns", str(holder.pid))
        for args in (["link", "set", "lo", "up"], ["link", "set", device, "addrgenmode", "none"],
                     ["addr", "add", f"{address}/24", "dev", device], ["link", "set", device, "up"]):
            subprocess.run(ns + ["ip", *args], check=True, capture_output=True, text=True)
        yield ns
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(5)
