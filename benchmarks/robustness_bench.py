"""meshcall under abuse: does a legitimate call keep working while someone misbehaves?

The real appliance runs as a subprocess on 127.0.0.1 (TLS, TURN on with loopback peers
allowed). A pair of clients in one room, in a process of their own so that the flood's
client work does not delay them, relay `signal` frames to each other at a steady rate:
one sends a frame carrying its send time, the other echoes it, the first records the
round trip. That pair is measured first on a quiet server, then while each flood shape
runs, one after another, each bounded in count and time and cleaned up before the next:

- idle: TCP connections to the HTTPS port that never speak, and TLS handshakes started
  (a ClientHello) and never finished, from several addresses;
- dribble: connections that finish TLS, then send one HTTP header byte every few
  seconds, from one address;
- pings: a WebSocket client sending WebSocket pings as fast as it can, reconnecting
  each time it is closed;
- sink: two room members relaying the largest offers the protocol relays, as fast as
  the rate limit allows, to a third member with a small receive buffer that never reads;
- rooms: one address opening new rooms as fast as it can;
- surrogate: joins and renames with a lone-surrogate name (`"\\ud800evil"` as a JSON
  escape), in the pair's own room.

Flood traffic comes from other loopback addresses (127.0.0.2 and up) than the pair's
(127.0.0.1), as it would on a LAN: the per-address connection cap is the appliance's
answer to one noisy host, and must not fall on the pair.

Per shape: the pair's p50/p99 and lost frames; the server's RSS before, at its peak and
after, and its CPU seconds; what the flood saw (connections closed or refused by the
server, error codes); and the lines with a traceback or ERROR the server logged.

    python benchmarks/robustness_bench.py [--size full|quick|tiny]

prints one JSON object; `run()` returns the same dict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import selectors
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import PYTHON, ROOT, cpu_seconds, insecure_context, meshcall_server, raise_nofile, rss_bytes  # noqa: E402
from helpers.logcheck import scan  # noqa: E402
from signaling_bench import percentile  # noqa: E402

HOST = "127.0.0.1"
MIB = 2**20
# The largest offer the server relays: its SDP limit (32 KiB of UTF-8), less room for
# the frame around it. A larger offer is a protocol error (`bad-field`), not a flood.
OFFER_SDP_BYTES = 32 * 1024 - 64
# Under the per-connection limit of 100 frames per second sustained.
SINK_RATE = 95.0
LONE_SURROGATE_NAMES = ("\ud800evil", "evil\udfff")
OPCODE_TEXT, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x1, 0x8, 0x9, 0xA

# Sizes: "full" as described above; "quick" the same floods in shorter windows, with
# shorter server deadlines so that their effect still shows; "tiny" for the test that
# keeps this bench from rotting (server defaults: on a busy machine a short deadline
# would cut the test's own clients).
SIZES: dict[str, dict[str, Any]] = {
    "full": {"window": 20.0, "pair_rate": 20.0, "idle": 1000, "handshakes": 300, "idle_addresses": 6,
             "dribble": 500, "dribble_every": 3.0, "ping_connections": 20, "pings_per_connection": 5000,
             "rooms": 2000, "room_concurrency": 16, "joins": 300, "renames": 1000, "server_args": []},
    "quick": {"window": 8.0, "pair_rate": 20.0, "idle": 1000, "handshakes": 300, "idle_addresses": 6,
              "dribble": 500, "dribble_every": 1.0, "ping_connections": 5, "pings_per_connection": 5000,
              "rooms": 600, "room_concurrency": 16, "joins": 100, "renames": 300,
              "server_args": ["--tls-handshake-timeout", "3", "--header-timeout", "4"]},
    "tiny": {"window": 3.0, "pair_rate": 20.0, "idle": 20, "handshakes": 10, "idle_addresses": 2,
             "dribble": 10, "dribble_every": 0.5, "ping_connections": 2, "pings_per_connection": 1000,
             "rooms": 20, "room_concurrency": 4, "joins": 6, "renames": 30, "server_args": []},
}
# The most a flood may take to reach full strength before the pair's window starts anyway.
BUILD_UP_SECONDS = 30.0
SHAPES = ("quiet", "idle", "dribble", "pings", "sink", "rooms", "surrogate")


def flood_address(n: int) -> str:
    """The n-th flood address (1-based): 127.0.0.(1+n). All of 127/8 is loopback."""
    return f"127.0.0.{1 + n}"


# --- a minimal WebSocket client over asyncio streams --------------------------------


class Closed(Exception):
    """The server closed the WebSocket (code from its close frame, None without one)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed ({code})")
        self.code = code


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame. The mask key is zero, so the payload goes unchanged: the
    server cannot tell, and the bench does not spend its CPU masking 32 KiB offers."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


class Ws:
    """One WebSocket to the appliance's /ws, without Origin (a native client)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, source: str = HOST, rcvbuf: int | None = None, timeout: float = 10) -> "Ws":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:  # before connect, so the window offered is small from the start
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((source, 0))
            sock.setblocking(False)
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
                reader, writer = await asyncio.open_connection(sock=sock, ssl=insecure_context(),
                                                               server_hostname=HOST)
                key = "bWVzaGNhbGwtYmVuY2gtMQ=="
                writer.write((f"GET /ws HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n").encode())
                head = await reader.readuntil(b"\r\n\r\n")
        except BaseException:
            sock.close()
            raise
        if not head.startswith(b"HTTP/1.1 101"):
            writer.transport.abort()
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        return cls(reader, writer)

    def send(self, msg: dict[str, Any] | str) -> None:
        text = msg if isinstance(msg, str) else json.dumps(msg)
        self.writer.write(frame(OPCODE_TEXT, text.encode("utf-8", "surrogatepass")))

    async def recv(self) -> tuple[int, bytes]:
        head = await self.reader.readexactly(2)
        n = head[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        if head[1] & 0x80:
            await self.reader.readexactly(4)  # servers do not mask; skip a key if one came
        return head[0] & 0x0F, await self.reader.readexactly(n)

    async def message(self) -> dict[str, Any]:
        """The next JSON frame; answers pings on the way; raises Closed at the end."""
        while True:
            try:
                opcode, payload = await self.recv()
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                raise Closed(None) from None
            if opcode == OPCODE_TEXT:
                return json.loads(payload)
            if opcode == OPCODE_PING:
                self.writer.write(frame(OPCODE_PONG, payload))
            elif opcode == OPCODE_CLOSE:
                raise Closed(struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None)

    async def join(self, room: str, name: str = "bench") -> dict[str, Any]:
        """Send `join` (as raw JSON text, so a lone-surrogate escape survives) and return
        the welcome or the error frame that answers it."""
        self.send(json.dumps({"type": "join", "room": room, "name": name}))
        while True:
            msg = await self.message()
            if msg["type"] in ("welcome", "error"):
                return msg

    def abort(self) -> None:
        self.writer.transport.abort()


# --- the legitimate pair (a process of its own) -----------------------------------


async def _open_retrying(port: int, tries: int = 3) -> Ws:
    """As a page does: on a very busy machine the first upgrade may miss a deadline."""
    for _ in range(tries - 1):
        try:
            return await Ws.open(port)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            await asyncio.sleep(0.5)
    return await Ws.open(port)


async def pair_main(port: int) -> None:
    """Join two clients to one room, say the room on stdout, then measure on command:
    a line `{"seconds": S, "rate": R}` on stdin runs one window and answers one JSON line."""
    room = f"pair-{random.getrandbits(32):08x}"
    a, b = await _open_retrying(port), await _open_retrying(port)
    welcome_a = await a.join(room, "Ada")
    welcome_b = await b.join(room, "Grace")
    ids = {"a": welcome_a["id"], "b": welcome_b["id"]}
    sent: dict[int, int] = {}
    rtts: dict[int, int] = {}  # nanoseconds
    trouble: list[str] = []

    async def echo() -> None:  # b sends every signal back to a, unchanged
        while True:
            msg = await b.message()
            if msg["type"] == "signal":
                b.send({"type": "signal", "to": ids["a"], "candidate": msg["candidate"]})
            elif msg["type"] == "error":
                trouble.append(f"b: {msg['error']}")

    async def collect() -> None:
        while True:
            msg = await a.message()
            if msg["type"] == "signal":
                seq = int(msg["candidate"]["candidate"].split()[1])
                if seq in sent and seq not in rtts:
                    rtts[seq] = time.monotonic_ns() - sent[seq]
            elif msg["type"] == "error":
                trouble.append(f"a: {msg['error']}")

    async def guard(name: str, reader: Callable[[], Awaitable[None]]) -> None:
        try:
            await reader()
        except Closed as exc:
            trouble.append(f"{name}: socket closed by the server ({exc.code})")

    tasks = [asyncio.create_task(guard("a", collect)), asyncio.create_task(guard("b", echo))]
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": True, "room": room, "ids": ids}), flush=True)
    seq = 0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line.strip():
            break
        command = json.loads(line)
        sent.clear()
        rtts.clear()
        trouble.clear()
        interval = 1.0 / command["rate"]
        start = time.monotonic()
        end = start + command["seconds"]
        while time.monotonic() < end:
            seq += 1
            sent[seq] = time.monotonic_ns()
            a.send({"type": "signal", "to": ids["b"],
                    "candidate": {"candidate": f"bench {seq} 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}})
            next_at = start + len(sent) * interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        tail_until = time.monotonic() + 3.0  # a frame not back 3 s after the window is lost
        while len(rtts) < len(sent) and time.monotonic() < tail_until:
            await asyncio.sleep(0.02)
        values = sorted(rtts.values())
        print(json.dumps({"sent": len(sent), "received": len(values), "lost": len(sent) - len(values),
                          "p50_ms": percentile(values, 0.50), "p99_ms": percentile(values, 0.99),
                          "max_ms": values[-1] / 1e6 if values else None, "trouble": trouble[:5]}), flush=True)
    for task in tasks:
        task.cancel()
    for ws in (a, b):
        ws.writer.write(frame(OPCODE_CLOSE, struct.pack("!H", 1000)))
        await ws.writer.drain()
        ws.abort()


class Pair:
    """The driver's side of the pair process: start it, run windows, stop it by PID."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen([PYTHON, __file__, "--pair", str(port)], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        try:
            hello = self._line(30)
        except BaseException:
            self.close()
            raise
        self.room: str = hello["room"]

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise RuntimeError(f"the pair said nothing in {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the pair exited ({self.proc.poll()})")
        return json.loads(line)

    def start_window(self, seconds: float, rate: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"seconds": seconds, "rate": rate}) + "\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        return self._line(timeout)

    def close(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.write("\n")
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# --- flood shapes -----------------------------------------------------------------
# Each takes (port, size, control, the pair's room), sets control.ready once it is at
# full strength (the pair's window starts then), runs until control.stop (or its count
# bound), and returns what it saw. Each closes every socket it opened before it returns,
# also when it fails.


class Control:
    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.stop = asyncio.Event()

    @property
    def stopped(self) -> bool:
        return self.stop.is_set()

    async def pause(self, seconds: float) -> bool:
        """Sleep, or less if told to stop; True when stopped."""
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        return self.stopped


def _client_hello() -> bytes:
    """The first flight of a TLS handshake, to send and never follow up."""
    ctx = insecure_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=HOST)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


async def _raw_connect(source: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (HOST, port)), 5)
    except BaseException:
        sock.close()
        raise
    return sock


# What became of one flood connection.
REFUSED = "refused at once"  # closed within REFUSED_WITHIN of connecting: the per-address cap
CLOSED = "closed later"      # closed by a deadline (TLS handshake, request header)
TLS_CUT = "closed during TLS"  # a full handshake attempted, cut by the handshake deadline
FAILED = "could not connect"
OPEN = "open at the end"
NOT_TRIED = "not tried"  # still waiting for its turn to connect when the window ended
REFUSED_WITHIN = 0.5


async def _hold(slots: int, ctl: Control, live: Callable[[int, Control, Callable[[], None]], Awaitable[str]],
                max_tries: int) -> dict[str, Any]:
    """Keep `slots` flood connections open, opening a new one whenever the server closes
    one (as a determined client would), at most `max_tries` tries in all. `live(i, ctl,
    up)` opens connection i, calls `up()` once it is established (TCP, or TLS where the
    shape needs it), keeps it as the shape wants until the server closes it or ctl stops,
    and says what became of it. Ready once every slot's first try has an outcome or is
    established."""
    outcomes: dict[str, int] = {}
    tries = [0]
    slots_tried = [0]
    open_now = [0, 0]  # established now, most at once

    async def slot(i: int) -> None:
        first = [True]

        def tried() -> None:
            if first[0]:
                first[0] = False
                slots_tried[0] += 1
                if slots_tried[0] == slots:
                    ctl.ready.set()

        while not ctl.stopped and tries[0] < max_tries:
            tries[0] += 1
            established = [False]

            def up() -> None:
                established[0] = True
                open_now[0] += 1
                open_now[1] = max(open_now[1], open_now[0])
                tried()

            try:
                what = await live(i, ctl, up)
            finally:
                if established[0]:
                    open_now[0] -= 1
                tried()
            outcomes[what] = outcomes.get(what, 0) + 1
            if what in (REFUSED, FAILED) and await ctl.pause(0.1):  # no spinning on a closed door
                break

    tasks = [asyncio.create_task(slot(i)) for i in range(slots)]
    try:
        await asyncio.gather(*tasks)
    finally:
        ctl.ready.set()
        for task in tasks:
            task.cancel()
    return {"slots": slots, "tries": tries[0], "most_open_at_once": open_now[1], "outcomes": outcomes}


async def _until_closed(sock: socket.socket, opened: float, ctl: Control) -> str:
    """Wait for the server to close `sock` (EOF or reset) or for the stop."""
    loop = asyncio.get_running_loop()
    reading = asyncio.ensure_future(loop.sock_recv(sock, 4096))
    stopping = asyncio.ensure_future(ctl.stop.wait())
    try:
        while True:
            done, _ = await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if reading in done:
                try:
                    data = reading.result()
                except OSError:
                    data = b""
                if data:
                    reading = asyncio.ensure_future(loop.sock_recv(sock, 4096))
                    continue
                return REFUSED if time.monotonic() - opened <= REFUSED_WITHIN else CLOSED
            return OPEN
    finally:
        reading.cancel()
        stopping.cancel()


async def flood_idle(port: int, size: dict[str, Any], ctl: Control, room: str) -> dict[str, Any]:
    total = size["idle"] + size["handshakes"]
    hello = set(random.Random(1).sample(range(total), size["handshakes"]))  # spread over the slots
    connecting = asyncio.Semaphore(64)  # connects in flight: a flood, not a listen-backlog overflow

    async def live(i: int, ctl: Control, up: Callable[[], None]) -> str:
        try:
            async with connecting:
                if ctl.stopped:
                    return NOT_TRIED
                sock = await _raw_connect(flood_address(1 + i % size["idle_addresses"]), port)
        except (OSError, asyncio.TimeoutError):
            return FAILED
        try:
            opened = time.monotonic()
            if i in hello:
                sock.send(_client_hello())
            up()
            return await _until_closed(sock, opened, ctl)
        finally:
            sock.close()

    held = await _hold(total, ctl, live, max_tries=total * 4)
    return {**held, "tls_hello_only_slots": len(hello), "addresses": size["idle_addresses"]}


async def flood_dribble(port: int, size: dict[str, Any], ctl: Control, room: str) -> dict[str, Any]:
    source = flood_address(11)
    header = (f"GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Dribble: " + "a" * 4000).encode()
    handshakes = asyncio.Semaphore(32)  # TLS in flight, so the bench's own CPU is not the limit
    bytes_sent = [0]

    async def live(i: int, ctl: Control, up: Callable[[], None]) -> str:
        async with handshakes:
            if ctl.stopped:
                return NOT_TRIED
            opened = time.monotonic()
            try:
                sock = await _raw_connect(source, port)
            except (OSError, asyncio.TimeoutError):
                return FAILED
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(sock=sock, ssl=insecure_context(), server_hostname=HOST), 10)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                sock.close()
                return REFUSED if time.monotonic() - opened <= REFUSED_WITHIN else TLS_CUT
        up()
        try:
            for i in range(len(header)):
                writer.write(header[i:i + 1])
                bytes_sent[0] += 1
                try:
                    data = await asyncio.wait_for(reader.read(4096), size["dribble_every"])
                except asyncio.TimeoutError:
                    if ctl.stopped:
                        return OPEN
                    continue
                except (OSError, ssl.SSLError):
                    data = b""
                if not data or data.startswith(b"HTTP/1.1 4"):
                    return CLOSED
            return OPEN
        finally:
            writer.transport.abort()

    held = await _hold(size["dribble"], ctl, live, max_tries=size["dribble"] * 4)
    return {**held, "header_bytes_sent": bytes_sent[0]}


async def flood_pings(port: int, size: dict[str, Any], ctl: Control, room: str) -> dict[str, Any]:
    ping = frame(OPCODE_PING, b"p")
    codes: dict[str, int] = {}
    sent = pongs = 0
    for _ in range(size["ping_connections"]):
        if ctl.stopped:
            break
        try:
            ws = await Ws.open(port, flood_address(12))
        except (OSError, ssl.SSLError) as exc:
            key = f"{FAILED} ({type(exc).__name__})"
            codes[key] = codes.get(key, 0) + 1
            continue
        finally:
            ctl.ready.set()
        try:
            async def read() -> None:
                nonlocal pongs
                while True:
                    opcode, payload = await ws.recv()
                    if opcode == OPCODE_PONG:
                        pongs += 1
                    elif opcode == OPCODE_CLOSE:
                        raise Closed(struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None)

            reader = asyncio.create_task(read())
            for _ in range(size["pings_per_connection"] // 100):
                if reader.done() or ctl.stopped:
                    break
                ws.writer.write(ping * 100)
                sent += 100
                try:
                    await asyncio.wait_for(ws.writer.drain(), 2)
                except (OSError, asyncio.TimeoutError):
                    break
                await asyncio.sleep(0)
            try:
                await asyncio.wait_for(reader, 2.0)
                key = "ended"
            except Closed as exc:
                key = str(exc.code)
            except TimeoutError:  # before OSError, of which it is a kind
                key = "still open at the end"
            except (asyncio.IncompleteReadError, OSError, ssl.SSLError):
                key = "dropped without a close frame"
            codes[key] = codes.get(key, 0) + 1
        finally:
            ws.abort()
    ctl.ready.set()
    return {"pings_sent": sent, "pongs": pongs, "connections_ended_by": codes}


async def flood_sink(port: int, size: dict[str, Any], ctl: Control, room: str) -> dict[str, Any]:
    source = flood_address(13)
    sink_room = f"sink-{random.getrandbits(32):08x}"
    sdp = "v=0\r\n" + "a=x-pad:" + "x" * (OFFER_SDP_BYTES - 15) + "\r\n"
    sink = await Ws.open(port, source, rcvbuf=4096)
    senders: list[Ws] = []
    errors: dict[str, int] = {}
    sent = 0
    try:
        sink_id = (await sink.join(sink_room, "sink"))["id"]
        sink.writer.transport.pause_reading()  # from here on, it never reads
        for name in ("s1", "s2"):
            ws = await Ws.open(port, source)
            await ws.join(sink_room, name)
            senders.append(ws)

        async def drain_replies(ws: Ws) -> None:
            while True:
                msg = await ws.message()
                if msg["type"] == "error":
                    errors[msg["error"]] = errors.get(msg["error"], 0) + 1

        readers = [asyncio.create_task(drain_replies(ws)) for ws in senders]
        offer = json.dumps({"type": "signal", "to": sink_id, "conn": "flood",
                            "description": {"type": "offer", "sdp": sdp}})
        ctl.ready.set()
        start = time.monotonic()
        while not ctl.stopped and not any(r.done() for r in readers):
            due = int((time.monotonic() - start) * SINK_RATE) + 1
            while sent < due * len(senders):
                for ws in senders:
                    ws.send(offer)
                    sent += 1
            await asyncio.gather(*(asyncio.wait_for(ws.writer.drain(), 5) for ws in senders))
            await asyncio.sleep(1.0 / SINK_RATE)
        senders_closed = sum(1 for r in readers if r.done())
        for r in readers:
            r.cancel()
        # Did the server give up on the sink? Read what it holds until the end.
        sink.writer.transport.resume_reading()
        sink_end = "still open"
        try:
            async with asyncio.timeout(5):
                while True:
                    await sink.message()
        except Closed as exc:
            sink_end = "closed" + (f" ({exc.code})" if exc.code else "")
        except TimeoutError:
            pass
    finally:
        ctl.ready.set()
        sink.abort()
        for ws in senders:
            ws.abort()
    return {"offers_sent": sent, "offer_bytes": len(offer), "sink": sink_end,
            "senders_closed": senders_closed, "errors_to_senders": errors}


async def flood_rooms(port: int, size: dict[str, Any], ctl: Control, room: str) -> dict[str, Any]:
    source = flood_address(14)
    outcomes: dict[str, int] = {}
    attempts = 0
    ctl.ready.set()

    async def worker() -> None:
        nonlocal attempts
        while attempts < size["rooms"] and not ctl.stopped:
            attempts += 1
            try:
                ws = await Ws.open(port, source)
            except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
                key = f"{FAILED} ({type(exc).__name__})"
                outcomes[key] = outcomes.get(key, 0) + 1
                continue
            try:
                reply = await asyncio.wait_for(ws.join(f"r{random.getrandbits(48):012x}"), 5)
                key = "welcome" if reply["type"] == "welcome" else reply["error"]
            except (Closed, asyncio.TimeoutError):
                key = "no answer"
            finally:
                ws.abort()  # no close frame: the peer keeps its place for the resume grace
            outcomes[key] = outcomes.get(key, 0) + 1

    await asyncio.gather(*(worker() for _ in range(size["room_concurrency"])))
    return {"attempts": attempts, "outcomes": outcomes}


async def flood_surrogate(port: int, size: dict[str, Any], ctl: Control, room: str) -> dict[str, Any]:
    """In the pair's room: a member renaming itself, and newcomers joining and leaving,
    all with names that are a lone surrogate plus text."""
    source = flood_address(15)
    names_seen: set[str] = set()
    errors: dict[str, int] = {}
    counts = {"joins": 0, "welcomes": 0, "renames": 0}
    renamer = await Ws.open(port, source)
    try:
        welcome = await renamer.join(room, LONE_SURROGATE_NAMES[0])
        if welcome["type"] != "welcome":
            return {"renamer_join": welcome.get("error")}
        counts["joins"] += 1
        counts["welcomes"] += 1

        async def watch() -> None:  # the names the others are shown
            while True:
                msg = await renamer.message()
                if msg["type"] in ("peer-joined", "peer-updated"):
                    names_seen.add(msg["peer"]["name"])
                elif msg["type"] == "error":
                    errors[msg["error"]] = errors.get(msg["error"], 0) + 1

        async def rename() -> None:  # at half the rate limit
            while counts["renames"] < size["renames"] and not ctl.stopped:
                renamer.send(json.dumps({"type": "rename", "name": LONE_SURROGATE_NAMES[counts["renames"] % 2]}))
                counts["renames"] += 1
                await asyncio.sleep(0.02)

        async def join_and_leave() -> None:  # two at a time: the room holds 6
            while counts["joins"] < size["joins"] and not ctl.stopped:
                counts["joins"] += 1
                try:
                    ws = await Ws.open(port, source)
                except (OSError, ssl.SSLError) as exc:
                    key = f"{FAILED} ({type(exc).__name__})"
                    errors[key] = errors.get(key, 0) + 1
                    continue
                try:
                    reply = await asyncio.wait_for(ws.join(room, LONE_SURROGATE_NAMES[counts["joins"] % 2]), 5)
                    if reply["type"] == "welcome":
                        counts["welcomes"] += 1
                        names_seen.update(p["name"] for p in reply["peers"] if p["id"] == welcome["id"])
                        ws.send({"type": "leave"})
                        await asyncio.wait_for(ws.message(), 5)  # until the server closes it
                    else:
                        errors[reply["error"]] = errors.get(reply["error"], 0) + 1
                except (Closed, TimeoutError):
                    pass  # closed after the leave, as it should; or no answer in time
                finally:
                    ws.abort()

        watcher = asyncio.create_task(watch())
        ctl.ready.set()
        try:
            await asyncio.gather(rename(), join_and_leave(), join_and_leave())
            await asyncio.sleep(0.2)  # the last peer-updated on its way
        finally:
            watcher.cancel()
        renamer_closed = watcher.done() and not watcher.cancelled() and watcher.exception() is not None
        renamer.send({"type": "leave"})
    finally:
        renamer.abort()
    return {**counts, "names_shown": sorted(names_seen), "errors": errors, "renamer_closed": renamer_closed}


FLOODS: dict[str, Callable[[int, dict[str, Any], float, str], Awaitable[dict[str, Any]]]] = {
    "idle": flood_idle, "dribble": flood_dribble, "pings": flood_pings, "sink": flood_sink,
    "rooms": flood_rooms, "surrogate": flood_surrogate,
}


def _n(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def _held(flood: dict[str, Any]) -> str:
    outcomes = flood["outcomes"]
    return (f"{_n(flood['tries'])} tries (most open at once {_n(flood['most_open_at_once'])}): "
            f"{_n(outcomes.get(REFUSED, 0))} refused at once, "
            + (f"{_n(outcomes[TLS_CUT])} cut during TLS, " if TLS_CUT in outcomes else "")
            + f"{_n(outcomes.get(CLOSED, 0))} closed later by a deadline, {_n(outcomes.get(OPEN, 0))} open at the end, "
            f"{_n(outcomes.get(FAILED, 0))} could not connect"
            + (f", {_n(outcomes[NOT_TRIED])} not tried in time" if NOT_TRIED in outcomes else ""))


def summary(name: str, size: dict[str, Any], flood: dict[str, Any]) -> tuple[str, str]:
    """(what the flood was, what the server did to it), in words for the table."""
    if name == "quiet":
        return "none", "—"
    if "failed" in flood:
        return name, f"flood failed: {flood['failed']}"
    if name == "idle":
        return (f"{_n(size['idle'])} idle TCP + {_n(size['handshakes'])} unfinished TLS handshakes held open, "
                f"{size['idle_addresses']} addresses", _held(flood))
    if name == "dribble":
        return (f"{_n(size['dribble'])} TLS connections held, 1 header byte / {size['dribble_every']:g} s, "
                "1 address", _held(flood))
    if name == "pings":
        ended = ", ".join(f"{_n(v)} closed with {k}" if k.isdigit() else f"{_n(v)} {k}"
                          for k, v in sorted(flood["connections_ended_by"].items()))
        return (f"WebSocket pings as fast as possible, {_n(flood['pings_sent'])} sent",
                f"{_n(flood['pongs'])} pongs; connections: {ended}")
    if name == "sink":
        errors = ", ".join(f"{_n(v)} {k}" for k, v in sorted(flood["errors_to_senders"].items())) or "none"
        return (f"2 members → 1 non-reader (4 KiB receive buffer), {_n(flood['offers_sent'])} offers of "
                f"{flood['offer_bytes'] // 1024} KiB",
                f"non-reader {flood['sink']} ({flood['server_said'].get('too-slow', 0)} too-slow in the log); senders closed: {flood['senders_closed']}; errors to senders: {errors}")
    if name == "rooms":
        outcomes = ", ".join(f"{_n(v)} {k}" for k, v in sorted(flood["outcomes"].items()))
        return f"new rooms from 1 address, {_n(flood['attempts'])} joins", outcomes
    if name == "surrogate":
        errors = ", ".join(f"{_n(v)} {k}" for k, v in sorted(flood.get("errors", {}).items())) or "no errors"
        return (f"{_n(flood.get('joins'))} joins + {_n(flood.get('renames'))} renames named \"\\ud800evil\"",
                f"{_n(flood.get('welcomes'))} welcomed, shown as {', '.join(flood.get('names_shown', []))}; {errors}")
    return name, json.dumps(flood)[:200]


# --- the driver -------------------------------------------------------------------


async def _sample_rss(pid: int, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_bytes(pid))
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except asyncio.TimeoutError:
            pass


def _load_average() -> float:
    """The machine's 1-minute load average: the pair's latency means little on a busy one."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


async def _shape(name: str, srv: Any, pair: Pair, size: dict[str, Any]) -> dict[str, Any]:
    """Build the flood up, measure the pair for one window while it runs, stop it, clean up."""
    pid = srv.pid
    log_from = len(srv.output())
    rss_before = rss_bytes(pid)
    cpu_before = cpu_seconds(pid)
    peak = [rss_before]
    sampling = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(pid, peak, sampling))
    window = size["window"]
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    ctl = Control()
    flood: dict[str, Any] = {}
    task = asyncio.create_task(FLOODS[name](srv.port, size, ctl, pair.room)) if name in FLOODS else None
    try:
        if task is not None:  # the window starts once the flood is at full strength
            await asyncio.wait({task, asyncio.create_task(ctl.ready.wait())}, timeout=BUILD_UP_SECONDS,
                               return_when=asyncio.FIRST_COMPLETED)
        build_up = time.monotonic() - t0
        pair.start_window(window, size["pair_rate"])
        measured = await loop.run_in_executor(None, pair.result, window + 30)
        ctl.stop.set()
        if task is not None:
            try:
                flood = await asyncio.wait_for(task, 30)
            except Exception as exc:  # the figures of the other shapes are still wanted
                flood = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
        await asyncio.sleep(1.0)  # let the server finish closing what the flood left
    finally:
        ctl.stop.set()
        if task is not None and not task.done():
            task.cancel()
        sampling.set()
        await sampler
    segment = srv.output()[log_from:]
    problems = scan(segment)
    if name == "sink":
        flood["server_said"] = {"too-slow": segment.count("(too-slow)")}
    return {"pair": measured, "flood": flood, "build_up_s": build_up, "load_average": _load_average(),
            "server": {"rss_before_mib": rss_before / MIB, "rss_peak_mib": peak[0] / MIB,
                       "rss_after_mib": rss_bytes(pid) / MIB, "cpu_s": cpu_seconds(pid) - cpu_before,
                       "seconds": time.monotonic() - t0, "alive": srv.proc.poll() is None},
            "tracebacks": problems[:5], "traceback_lines": len(problems)}


def run(size_name: str = "full", shapes: tuple[str, ...] = SHAPES, log: Callable[[str], None] = print) -> dict[str, Any]:
    size = SIZES[size_name]
    raise_nofile(20000)
    out: dict[str, Any] = {"size": size_name, "sizes": size, "shapes": {}}
    with tempfile.TemporaryDirectory(prefix="meshcall-bench-robust-") as tmp:
        extra = ("--turn-allow-loopback", *size["server_args"])
        srv = meshcall_server(Path(tmp) / "data", turn=True, args=extra)
        out["server_args"] = list(extra)  # besides its loopback ports and data dir
        with srv:
            time.sleep(0.5)
            pair = Pair(srv.port)
            try:
                for name in shapes:
                    log(f"robustness: {name}")
                    result = asyncio.run(_shape(name, srv, pair, size))
                    out["shapes"][name] = result
                    p = result["pair"]
                    log(f"  pair p50 {p['p50_ms']} ms p99 {p['p99_ms']} ms lost {p['lost']}/{p['sent']}; "
                        f"flood {json.dumps(result['flood'])[:300]}")
            finally:
                pair.close()
            out["server_alive_at_end"] = srv.proc is not None and srv.proc.poll() is None
            out["server_log_tail"] = srv.output()[-2000:] if any(
                s["traceback_lines"] for s in out["shapes"].values()) else ""
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--pair", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pair:
        asyncio.run(pair_main(args.pair))
        return 0
    print(json.dumps(run(args.size, log=lambda m: print(m, file=sys.stderr)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
