"""mDNS as a device on the LAN sees it: dig (an independent DNS client) asks the
appliance's multicast DNS responder on a veth test LAN in the private network namespace."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import subprocess
import sys
from typing import Iterator

import pytest
from cryptography import x509

from helpers.netns import other_machine, private_lan
from helpers.procs import Meshcall
from meshcall import netinfo
from meshcall.mdns import Mdns, candidates

# The last line of the start-up announcement, after every join line (waiting for "ready"
# alone could read the log before them).
READY = "data dir:"


def dig(server: str, name: str, kind: str = "A") -> list[str]:
    # +time/+tries bound the wait: a name nobody answers for costs 2 s, not a hang.
    res = subprocess.run(["dig", "+short", "+time=1", "+tries=2", "-p", "5353", f"@{server}", name, kind],
                         capture_output=True, text=True, timeout=15)
    return [line for line in res.stdout.splitlines() if line and not line.startswith(";")]


@pytest.fixture
def lan() -> Iterator[tuple[str, str]]:
    with private_lan() as addrs:
        yield addrs


def served_names(mc: Meshcall) -> set[str]:
    pem = ssl.get_server_certificate((mc.host, mc.port))
    san = x509.load_pem_x509_certificate(pem.encode()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName))


def test_alias_and_host_name_resolve_to_the_lan_address(lan: tuple[str, str]) -> None:
    here, _ = lan
    with Meshcall(host=here) as mc:
        out = mc.wait_for(READY)
        assert dig(here, "meshcall.local") == [here]
        assert dig(here, f"{netinfo.hostname()}.local") == [here]
        assert f"join: https://meshcall.local:{mc.port}/" in out
        # DNS-SD: the service points at the join page's port, on the alias.
        srv = dig(here, "meshcall._https._tcp.local", "SRV")
        assert srv == [f"0 0 {mc.port} meshcall.local."]
        assert "meshcall.local" in served_names(mc)


def test_a_second_appliance_takes_the_next_name(lan: tuple[str, str]) -> None:
    here, there = lan
    # The second machine's namespace outlives both appliances: their goodbyes go out
    # while the LAN still exists.
    with other_machine("lan0p", there) as ns:
        with Meshcall(host=here) as first:
            first.wait_for(READY)
            with Meshcall(host=there, command=[*ns, sys.executable, "-m", "meshcall"]) as second:
                out = second.wait_for(READY)
                assert "meshcall.local is already announced by another device" in out
                assert f"join: https://meshcall-2.local:{second.port}/" in out
                assert dig(there, "meshcall-2.local") == [there]
                assert dig(here, "meshcall.local") == [here]  # the first keeps its name
                assert "meshcall-2.local" in served_names(second)


def test_no_mdns_answers_nothing(lan: tuple[str, str]) -> None:
    here, _ = lan
    with Meshcall(["--no-mdns"], host=here) as mc:
        out = mc.wait_for(READY)
        assert dig(here, "meshcall.local") == []
        assert "mDNS" not in out and "meshcall.local" not in out


def test_name_candidates_follow_rfc6762_renaming() -> None:
    assert candidates("meshcall")[:3] == ["meshcall", "meshcall-2", "meshcall-3"]


@pytest.mark.parametrize("text,label", [("meshcall.local", "meshcall"), ("Room-1", "room-1"), ("a.local.", "a")])
def test_alias_label_accepts_one_label(text: str, label: str) -> None:
    assert netinfo.alias_label(text) == label


@pytest.mark.parametrize("text", ["", "two.labels", "-x", "x_y", "é"])
def test_alias_label_refuses_other_names(text: str) -> None:
    with pytest.raises(ValueError):
        netinfo.alias_label(text)


def test_a_failed_start_leaves_no_name_behind(lan: tuple[str, str]) -> None:
    here, _ = lan
    mc = Meshcall(host=here, turn=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind((here, mc.turn_port))  # TURN cannot start: after mDNS has begun announcing
        res = subprocess.run(mc.command + mc.args, capture_output=True, text=True, timeout=20)
    mc.close()
    assert res.returncode == 1 and f"TURN port {mc.turn_port}" in res.stderr, res.stderr
    assert "mDNS: announcing meshcall.local" in res.stderr  # it had started: stopped on the way out
    assert "Traceback" not in res.stderr


def test_a_new_address_is_announced_under_the_same_names(lan: tuple[str, str]) -> None:
    here, _ = lan
    extra = "198.18.0.5"
    subprocess.run(["ip", "addr", "add", f"{extra}/24", "dev", "lan0"], check=True)

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        mdns = Mdns("testbox", "meshcall")
        try:
            names = await mdns.start(8443, [ipaddress.ip_address(here)])
            before = await asyncio.to_thread(dig, here, "meshcall.local")
            await mdns.update([ipaddress.ip_address(here), ipaddress.ip_address(extra)])
            after = await asyncio.to_thread(dig, here, "meshcall.local")
            return names, before, after
        finally:
            await mdns.stop()

    names, before, after = asyncio.run(scenario())
    assert names == ["meshcall.local", "testbox.local"]
    assert before == [here] and sorted(after) == sorted([here, extra])
