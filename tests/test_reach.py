"""Where people can reach the appliance: both address families, and only join addresses
the certificate covers."""

from __future__ import annotations

import ipaddress
import subprocess
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from helpers.netns import private_lan
from helpers.procs import Meshcall, get_json, insecure_context
from meshcall import certs, reach

# The last line of the start-up announcement, after every join line (waiting for "ready"
# alone could read the log before them).
READY = "data dir:"
V6 = "fd00:18::1"
PUBLIC = "203.0.113.7"  # TEST-NET-3: outside the local CA's name constraints, like a public address


@pytest.fixture
def lan() -> Iterator[str]:
    with private_lan() as (here, _):
        # nodad: usable at once, as a settled address on a real LAN would be.
        subprocess.run(["ip", "addr", "add", f"{V6}/64", "dev", "lan0", "nodad"], check=True)
        subprocess.run(["ip", "addr", "add", f"{PUBLIC}/24", "dev", "lan0"], check=True)
        yield here


def every_address(here: str, *args: str) -> Meshcall:
    """meshcall with the default --host (every address); polled on the test LAN's IPv4."""
    mc = Meshcall(args, host=here, turn=True)
    mc.args[mc.args.index("--host") + 1] = "::"
    return mc


def test_one_start_serves_ipv4_and_ipv6(lan: str, tmp_path: Path) -> None:
    with every_address(lan) as mc:
        out = mc.wait_for(READY)
        ca = insecure_context(mc.data_dir / "ca.crt")  # verified: the leaf names both addresses
        assert get_json(f"https://{lan}:{mc.port}/healthz", ca)["status"] == "ok"
        assert get_json(f"https://[{V6}]:{mc.port}/healthz", ca)["status"] == "ok"
        for host in (lan, f"[{V6}]"):
            with urllib.request.urlopen(f"http://{host}:{mc.http_port}/", timeout=5) as page:
                assert page.status == 200
        assert f"join: https://[{V6}]:{mc.port}/" in out
        turn_line = next(line for line in out.splitlines() if "TURN: listening on" in line)
        assert lan in turn_line and V6 in turn_line


def test_an_address_the_certificate_cannot_cover_is_not_printed(lan: str) -> None:
    with every_address(lan) as mc:
        out = mc.wait_for(READY)
        assert f"join: https://{lan}:{mc.port}/" in out
        assert f"https://{PUBLIC}" not in out
        assert (f"join: {PUBLIC} left out: a public address" in out
                and f"join by https://meshcall.local:{mc.port}/ instead, or give --cert/--key" in out)


def test_ipv4_only_keeps_to_ipv4(lan: str) -> None:
    mc = every_address(lan)
    mc.args[mc.args.index("--host") + 1] = "0.0.0.0"
    with mc:
        out = mc.wait_for(READY)
        assert V6 not in out
        with pytest.raises(OSError):
            get_json(f"https://[{V6}]:{mc.port}/healthz", timeout=2)


def test_covers_matches_addresses_names_and_one_wildcard_label() -> None:
    ca, key = certs.make_ca("box")
    leaf, _ = certs.make_leaf(ca, key, "box", [ipaddress.ip_address("192.168.1.5"),
                                               ipaddress.ip_address(PUBLIC)], ["meshcall.local"])
    assert reach.covers(leaf, "192.168.1.5") and reach.covers(leaf, "meshcall.local")
    assert reach.covers(leaf, "box.local") and not reach.covers(leaf, "other.local")
    assert not reach.covers(leaf, PUBLIC)  # make_leaf never names what the CA may not vouch for
    assert not reach.covers(leaf, "[fd00::5]")


def test_join_hosts_without_certificate_keeps_everything() -> None:
    hosts, left = reach.join_hosts("198.18.0.9", ["meshcall.local"], None, own_ca=True)
    assert hosts == ["198.18.0.9", "meshcall.local"] and left == []
