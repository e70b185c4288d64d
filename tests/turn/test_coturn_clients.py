"""Real clients nobody here wrote, against meshcall's TURN server: coturn's tools."""

from __future__ import annotations

import re
import socket
import time

import pytest

from helpers.procs import free_port
from meshcall.turn.credentials import rest_credentials, rest_password

from .conftest import SECRET, LiveServer, Processes, require_coturn

MESSAGES = 30
CLIENTS = 4


@pytest.fixture
def echo_peer(processes: Processes) -> int:
    """coturn's turnutils_peer echoing UDP on 127.0.0.1; returns its port."""
    require_coturn()
    port = free_port(socket.SOCK_DGRAM)
    proc = processes.start(["turnutils_peer", "-L", "127.0.0.1", "-p", str(port)])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.settimeout(0.2)
            probe.sendto(b"ping", ("127.0.0.1", port))
            try:
                if probe.recv(100) == b"ping":
                    return port
            except (TimeoutError, ConnectionRefusedError):
                pass
        if proc.poll() is not None:
            break
    pytest.fail("turnutils_peer did not start echoing")


def totals(output: str) -> tuple[int, int, int]:
    """(sent, received, lost) from turnutils_uclient's summary lines."""
    sent_recv = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", output)
    lost = re.findall(r"Total lost packets (\d+)", output)
    assert sent_recv and lost, f"no summary in turnutils_uclient output:\n{output}"
    return int(sent_recv[-1][0]), int(sent_recv[-1][1]), int(lost[-1])


def uclient(processes: Processes, server: LiveServer, *args: str) -> str:
    return processes.run(
        ["turnutils_uclient", *args, "-n", str(MESSAGES), "-m", str(CLIENTS), "-p", str(server.port), "127.0.0.1"],
        timeout=90,
    )


def assert_all_echoed(output: str, server: LiveServer) -> None:
    assert "ERROR" not in output, output
    sent, received, lost = totals(output)
    assert sent >= MESSAGES * CLIENTS, output
    assert received == sent, output
    assert lost == 0, output
    stats = server.stats()
    assert stats["packets_to_peers"] >= sent
    assert stats["packets_to_clients"] >= received


def test_stunclient_gets_its_reflexive_address(turn_server: LiveServer, processes: Processes) -> None:
    require_coturn()
    output = processes.run(["turnutils_stunclient", "-p", str(turn_server.port), "127.0.0.1"], timeout=30)
    assert re.search(r"UDP reflexive addr: 127\.0\.0\.1:\d+", output), output


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_uclient_rest_secret_through_echo_peer(
    turn_server: LiveServer, processes: Processes, echo_peer: int, transport: str
) -> None:
    flags = ["-t"] if transport == "tcp" else []
    output = uclient(processes, turn_server, *flags, "-W", SECRET.decode(), "-u", "alice", "-e", "127.0.0.1", "-r", str(echo_peer))
    assert_all_echoed(output, turn_server)


def test_uclient_send_indications(turn_server: LiveServer, processes: Processes, echo_peer: int) -> None:
    output = uclient(processes, turn_server, "-s", "-W", SECRET.decode(), "-u", "alice", "-e", "127.0.0.1", "-r", str(echo_peer))
    assert_all_echoed(output, turn_server)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_uclient_explicit_rest_username_client_to_client(
    turn_server: LiveServer, processes: Processes, transport: str
) -> None:
    require_coturn()
    username, password = rest_credentials(SECRET, "bob", 600)
    flags = ["-t"] if transport == "tcp" else []
    output = uclient(processes, turn_server, *flags, "-y", "-u", username, "-w", password)
    assert_all_echoed(output, turn_server)


def test_uclient_wrong_secret_refused(turn_server: LiveServer, processes: Processes, echo_peer: int) -> None:
    output = uclient(processes, turn_server, "-W", "not-the-secret", "-u", "eve", "-e", "127.0.0.1", "-r", str(echo_peer))
    assert "Cannot complete Allocation" in output, output
    assert turn_server.stats()["allocations_total"] == 0


def test_uclient_expired_username_refused(turn_server: LiveServer, processes: Processes, echo_peer: int) -> None:
    username = f"{int(time.time()) - 10}:eve"
    output = uclient(
        processes, turn_server, "-u", username, "-w", rest_password(SECRET, username), "-e", "127.0.0.1", "-r", str(echo_peer)
    )
    assert "Cannot complete Allocation" in output, output
    assert turn_server.stats()["allocations_total"] == 0
