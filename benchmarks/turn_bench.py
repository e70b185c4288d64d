"""Relay the same load through meshcall's TURN server and through coturn; compare CPU cost.

Each server runs in its own process on 127.0.0.1 with loopback peers allowed.
A load generator, in a process of its own, makes ``streams`` allocations over
UDP with REST credentials and sends 1000-byte ChannelData at ``rate_bps``
bits/s per stream for ``duration`` seconds, in two shapes:

- **sink**: each allocation's channel leads to one plain socket. This is the
  ChannelData path Chromium uses, one allocation per packet; its packets per
  server CPU-second give the meshcall ÷ coturn ratio. With 30 streams at
  1 Mbit/s it is the load a fully relayed six-person room puts on the relay
  (each person sends to five), and its share of a core is the room's cost.
- **room**: the allocations pair up, each bound to the other's relayed
  address, as when both browsers of a call use relay candidates: every packet
  enters as ChannelData, goes from one relay socket to the other and leaves
  as ChannelData, so it costs about two packets of the sink shape.

The server process's CPU time (utime + stime of all its threads, from
/proc/<pid>/stat) is read just before and after the load; the packets
relayed are those the receivers got. The servers take turns (meshcall,
coturn, meshcall, coturn), so a change in the machine's load hits both.

    python benchmarks/turn_bench.py [--duration 5] [--streams 30] [--rate-bps 1000000]

prints one JSON object. ``run()`` returns the same dict.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from common import cpu_seconds  # noqa: E402

from meshcall.turn import codec  # noqa: E402
from meshcall.turn.codec import Attr, Class, Message, Method  # noqa: E402
from meshcall.turn.credentials import rest_credentials  # noqa: E402

HOST = "127.0.0.1"
SECRET = "bench-secret"
PAYLOAD_SIZE = 1000
START_TIMEOUT = 15.0
SETUP_TIMEOUT = 30.0
# Targets (benchmark figures, not test assertions): at least half coturn's packets per
# CPU-second on the ChannelData path, and a fully relayed six-person room (30 x 1 Mbit/s)
# under a tenth of one core.
EFFICIENCY_TARGET = 0.5
CPU_TARGET = 0.10


# --- the load generator (runs in its own process) --------------------------


def _request(sock: socket.socket, message: Message, key: bytes | None) -> Message:
    data = message.encode(key, fingerprint=True)
    for _ in range(10):
        sock.send(data)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                reply = sock.recv(4096)
            except (TimeoutError, BlockingIOError):
                break
            if codec.looks_like_stun(reply):
                parsed = codec.parse_message(reply)
                if parsed.transaction_id == message.transaction_id:
                    return parsed
    raise TimeoutError("TURN server did not answer")


def _allocate(port: int, index: int) -> tuple[socket.socket, bytes, list[tuple[int, bytes]], tuple[str, int]]:
    """One allocation over UDP: its socket, key, credentials attributes and relayed address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.connect((HOST, port))
    udp = (int(Attr.REQUESTED_TRANSPORT), b"\x11\x00\x00\x00")
    challenge = _request(sock, Message(Method.ALLOCATE, Class.REQUEST, os.urandom(12), [udp]), None)
    realm, nonce = challenge.get(Attr.REALM), challenge.get(Attr.NONCE)
    if realm is None or nonce is None:
        raise RuntimeError("no 401 challenge")
    username, password = rest_credentials(SECRET.encode(), f"bench{index}", 3600)
    key = codec.long_term_key(username, realm.decode(), password)
    auth = [(int(Attr.USERNAME), username.encode()), (int(Attr.REALM), realm), (int(Attr.NONCE), nonce)]
    allocated = _request(sock, Message(Method.ALLOCATE, Class.REQUEST, os.urandom(12), [udp] + auth), key)
    if allocated.cls != Class.SUCCESS:
        raise RuntimeError(f"allocate failed: {allocated.get(Attr.ERROR_CODE)!r}")
    value = allocated.get(Attr.XOR_RELAYED_ADDRESS)
    if value is None:
        raise RuntimeError("no XOR-RELAYED-ADDRESS")
    relayed = codec.unpack_xor_address(value, allocated.transaction_id)
    return sock, key, auth, relayed


def _bind(sock: socket.socket, key: bytes, auth: list[tuple[int, bytes]], channel: int, peer: tuple[str, int]) -> None:
    tid = os.urandom(12)
    bind = Message(Method.CHANNEL_BIND, Class.REQUEST, tid)
    bind.add(Attr.CHANNEL_NUMBER, codec.pack_channel_number(channel))
    bind.add(Attr.XOR_PEER_ADDRESS, codec.pack_xor_address(peer[0], peer[1], tid))
    for kind, value in auth:
        bind.add(kind, value)
    bound = _request(sock, bind, key)
    if bound.cls != Class.SUCCESS:
        raise RuntimeError(f"channel bind failed: {bound.get(Attr.ERROR_CODE)!r}")


def _setup(port: int, streams: int, shape: str, sink: tuple[str, int]) -> list[socket.socket]:
    """The clients' sockets, each with channel 0x4000 + its index bound.

    ``sink``: every allocation's channel leads to one plain socket (the
    ChannelData path alone). ``room``: allocations pair up, each bound to the
    other's relayed address, as two browsers that both use relay candidates,
    so every packet crosses two allocations (ChannelData in, from one relay
    socket to the other, ChannelData out).
    """
    allocations = [_allocate(port, i) for i in range(streams)]
    for i, (sock, key, auth, _) in enumerate(allocations):
        peer = sink if shape == "sink" else allocations[i ^ 1][3]
        _bind(sock, key, auth, 0x4000 + i, peer)
    for sock, _, _, _ in allocations:
        sock.setblocking(False)
    return [a[0] for a in allocations]


def load_main(port: int, streams: int, rate_bps: int, duration: float, shape: str = "sink") -> None:
    """Set up, say "ready", wait for "go" on stdin, send, then print the counts."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sink.bind((HOST, 0))
    sink.setblocking(False)
    clients = _setup(port, streams, shape, sink.getsockname())
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        return
    interval = PAYLOAD_SIZE * 8 / rate_bps  # seconds between packets of one stream
    frames = [codec.pack_channel_data(0x4000 + i, os.urandom(PAYLOAD_SIZE)) for i in range(streams)]
    sent = [0] * streams
    received = 0
    send_errors = 0
    start = time.monotonic()
    end = start + duration
    selector = selectors.DefaultSelector()
    for receiver in [sink] if shape == "sink" else clients:
        selector.register(receiver, selectors.EVENT_READ)
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) / interval) + 1
        for i, client in enumerate(clients):
            while sent[i] < due:
                try:
                    client.send(frames[i])
                except (BlockingIOError, ConnectionRefusedError):
                    send_errors += 1
                sent[i] += 1
        for key, _ in selector.select(timeout=min(0.002, max(0.0, end - time.monotonic()))):
            received += _drain(key.fileobj)  # type: ignore[arg-type]
    drain_until = time.monotonic() + 0.5
    while time.monotonic() < drain_until:
        for key, _ in selector.select(timeout=0.05):
            received += _drain(key.fileobj)  # type: ignore[arg-type]
    result = {"sent": sum(sent), "received": received, "send_errors": send_errors, "seconds": round(duration, 3)}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    selector.close()
    for client in clients:
        client.close()
    sink.close()


def _drain(sink: socket.socket) -> int:
    count = 0
    while True:
        try:
            sink.recv(4096)
        except BlockingIOError:
            return count
        count += 1


# --- the harness -------------------------------------------------------------


def _udp_buffer_drops() -> int | None:
    """Datagrams the kernel dropped for a full socket receive buffer, any socket in this network namespace."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
        return int(lines[1][lines[0].index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return None


def _free_port() -> int:
    """A port number free for both UDP and TCP (the kernel picks a free UDP one; the same
    number may be taken for TCP, so it tries again, a bounded number of times)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind((HOST, 0))
            port = int(udp.getsockname()[1])
            try:
                tcp.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both UDP and TCP")


def _stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(5)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _wait_binding(port: int, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            message = Message(Method.BINDING, Class.REQUEST, os.urandom(12))
            try:
                sock.sendto(message.encode(), (HOST, port))
                if codec.looks_like_stun(sock.recv(2048)):
                    return
            except (TimeoutError, ConnectionRefusedError):
                time.sleep(0.05)
    raise RuntimeError("server did not answer a Binding request in time")


def _start_meshcall(port: int, streams: int, log: Path) -> subprocess.Popen[bytes]:
    args = [
        sys.executable, "-m", "meshcall.turn", "--listen", HOST, "--port", str(port), "--secret", SECRET,
        "--allow-loopback-peers", "--min-port", "50000", "--max-port", "50999",
        "--max-allocations", str(max(200, streams * 2)),
    ]  # fmt: skip
    with log.open("wb") as stderr:  # its statistics, one JSON line when it stops
        return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)


def _meshcall_dropped(log: Path) -> int | None:
    """Packets the meshcall server itself dropped (its statistics line), or None if it printed none."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        try:
            return int(json.loads(line)["packets_dropped"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _start_coturn(port: int, workdir: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("turnserver")
    if binary is None:
        raise RuntimeError("coturn's turnserver is not installed (apt-get install coturn)")
    args = [
        binary, "-n", f"--listening-ip={HOST}", f"--relay-ip={HOST}", f"--listening-port={port}",
        "--min-port=51000", "--max-port=51999", "--use-auth-secret", f"--static-auth-secret={SECRET}",
        "--realm=meshcall", "--no-tls", "--no-dtls", "--no-cli", f"--db={workdir}/turndb",
        f"--pidfile={workdir}/turn.pid", "--allow-loopback-peers", f"--log-file={workdir}/turn.log",
    ]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _measure(name: str, shape: str, duration: float, streams: int, rate_bps: int, workdir: str) -> dict[str, Any]:
    port = _free_port()  # the same number free for UDP and TCP, as TURN listens on both
    log = Path(workdir) / f"meshcall-{port}.log"
    server = _start_meshcall(port, streams, log) if name == "meshcall" else _start_coturn(port, workdir)
    load: subprocess.Popen[str] | None = None
    try:
        _wait_binding(port, server)
        load = subprocess.Popen(
            [sys.executable, __file__, "--load", str(port), str(streams), str(rate_bps), str(duration), shape],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert load.stdin is not None and load.stdout is not None
        ready = _readline(load, SETUP_TIMEOUT)
        if ready != "ready":
            raise RuntimeError(f"{name}: load generator failed to set up ({ready!r})")
        time.sleep(0.3)
        drops_before = _udp_buffer_drops()
        cpu_before = cpu_seconds(server.pid)
        wall_before = time.monotonic()
        load.stdin.write("go\n")
        load.stdin.flush()
        line = _readline(load, duration + 15)
        wall = time.monotonic() - wall_before
        cpu = cpu_seconds(server.pid) - cpu_before
        drops_after = _udp_buffer_drops()
        counts = json.loads(line)
    finally:
        if load is not None:
            _stop(load)
            for pipe in (load.stdin, load.stdout):
                if pipe is not None:
                    pipe.close()
        _stop(server)
    relayed = int(counts["received"])
    extra = {"server_dropped": _meshcall_dropped(log)} if name == "meshcall" else {}
    return {
        "packets_sent": int(counts["sent"]),
        "packets_relayed": relayed,
        "loss": round(1 - relayed / counts["sent"], 4) if counts["sent"] else None,
        "cpu_seconds": round(cpu, 3),
        "wall_seconds": round(wall, 3),
        # CPU over the loaded period (the wall time adds an idle half-second drain).
        "cpu_share_of_one_core": round(cpu / duration, 4),
        "packets_per_cpu_second": round(relayed / cpu) if cpu > 0 else None,
        # Where lost packets went: full socket buffers (server's or load generator's).
        "udp_buffer_drops": drops_after - drops_before if drops_before is not None and drops_after is not None else None,
        **extra,
    }


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f"no output from the load generator in {timeout} s")
    return proc.stdout.readline().strip()


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def run(duration: float = 5.0, streams: int = 30, rate_bps: int = 1_000_000) -> dict[str, Any]:
    """Measure meshcall and coturn under the same relayed loads; see the module docstring."""
    if not 0 < streams <= 0x3FFF:
        raise ValueError("streams must be between 1 and 16383")
    room_streams = streams - streams % 2  # the room pairs allocations
    measured: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="turn-bench-") as workdir:
        # Alternating servers, so a change in the machine's load between runs hits both.
        for shape, count in (("sink", streams), ("room", room_streams)):
            for name in ("meshcall", "coturn"):
                if count:
                    measured[f"{name}_{shape}"] = _measure(name, shape, duration, count, rate_bps, workdir)
    ours = measured["meshcall_sink"]["packets_per_cpu_second"]
    theirs = measured["coturn_sink"]["packets_per_cpu_second"]
    room = measured.get("meshcall_room", {})
    coturn_room = measured.get("coturn_room", {})
    results: dict[str, Any] = {
        "load": {"streams": streams, "rate_bps_per_stream": rate_bps, "payload_bytes": PAYLOAD_SIZE, "duration": duration},
        # The ChannelData path alone: client -> allocation -> a plain socket.
        "meshcall_packets_per_cpu_second": ours,
        "coturn_packets_per_cpu_second": theirs,
        "meshcall_vs_coturn_efficiency": _ratio(ours, theirs),
        "meshcall_cpu_share_of_one_core": measured["meshcall_sink"]["cpu_share_of_one_core"],
        "coturn_cpu_share_of_one_core": measured["coturn_sink"]["cpu_share_of_one_core"],
        # The same streams between paired allocations: each packet crosses two.
        "room_streams": room_streams,
        "room_meshcall_cpu_share_of_one_core": room.get("cpu_share_of_one_core"),
        "room_coturn_cpu_share_of_one_core": coturn_room.get("cpu_share_of_one_core"),
        "room_meshcall_vs_coturn_efficiency": _ratio(room.get("packets_per_cpu_second"), coturn_room.get("packets_per_cpu_second")),
        "targets": {"efficiency": EFFICIENCY_TARGET, "cpu_share_of_one_core": CPU_TARGET},
        "meets_targets": bool(
            (_ratio(ours, theirs) or 0) >= EFFICIENCY_TARGET
            and measured["meshcall_sink"]["cpu_share_of_one_core"] < CPU_TARGET
        ),
    }
    results.update(measured)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--rate-bps", type=int, default=1_000_000)
    parser.add_argument("--load", nargs=5, metavar=("PORT", "STREAMS", "RATE", "DURATION", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        port, streams, rate, duration, shape = args.load
        load_main(int(port), int(streams), int(rate), float(duration), shape)
        return 0
    print(json.dumps(run(args.duration, args.streams, args.rate_bps), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
