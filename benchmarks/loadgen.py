"""Signaling load generators: worker processes, each one asyncio loop with many clients.

Every room lives in one worker (6 clients), so a worker sees both ends of its relays and
measures latency from the sender's timestamp (time.monotonic_ns, one clock for the whole
machine) to the receiver's arrival. Two client kinds speak the same frames:

- "ws": meshcall's protocol as JSON text frames (also the floor), with the `websockets` client,
  each client from its own loopback address (see source_address);
- "sio": the same messages as Socket.IO events (`type` becomes the event name), with the
  python-socketio asyncio client over the WebSocket transport only.

The parent drives phases through a Pipe: join, negotiate, steady, leave, stop. Every phase
is bounded in time; every loop is bounded in count.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
from multiprocessing.connection import Connection
from typing import Any, Callable

SDP_SIZE = 5 * 1024
CANDIDATES = 8
MAX_SAMPLES = 400_000


@functools.lru_cache(maxsize=4)
def fake_sdp(kind: str, size: int = SDP_SIZE) -> str:
    """A plausible-looking SDP of about `size` characters."""
    head = ["v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
            "a=group:BUNDLE 0 1", "a=extmap-allow-mixed", "a=msid-semantic: WMS stream"]
    lines = list(head)
    i, length = 0, sum(len(x) + 2 for x in lines)
    while length < size:
        lines.append(f"a=rtpmap:{96 + i % 30} VP8/90000" if i % 3 else
                     f"a=fmtp:{96 + i % 30} level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f")
        length += len(lines[-1]) + 2
        i += 1
    lines.append(f"a=setup:{'actpass' if kind == 'offer' else 'active'}")
    return "\r\n".join(lines)[:size]


def candidate(i: int, ufrag: str) -> dict[str, Any]:
    return {"candidate": f"candidate:{1000 + i} 1 udp 2122260223 127.0.0.1 {50000 + i} typ host generation 0 "
                         f"ufrag q0Zc network-id 1", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": ufrag}


def source_address(room: str, index: int) -> str:
    """Each client connects from its own loopback address, as each device on a LAN has its
    own: meshcall caps connections per address (256 by default), which one address for
    all the bench's clients would run into from 300 clients on. Room "bench-N", client i:
    127.1.x.y, distinct for up to 62,500 clients."""
    n = int(room.rsplit("-", 1)[1]) * 6 + index
    return f"127.1.{n // 250}.{n % 250 + 1}"


class Client:
    """One signaling client; `kind` picks the transport, the logic is shared."""

    def __init__(self, worker: "Worker", room: str, index: int) -> None:
        self.w, self.room, self.index = worker, room, index
        self.id: str | None = None
        self.peers: list[str] = []
        self.peers_before: list[str] = []
        self.welcome = asyncio.get_running_loop().create_future()
        self.ws: Any = None
        self.sio: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.next_peer = 0
        self.offer = fake_sdp("offer")
        self.answer = fake_sdp("answer")

    # -- transport ---------------------------------------------------------------

    async def connect(self) -> None:
        if self.w.kind == "ws":
            from websockets.asyncio.client import connect

            self.ws = await connect(self.w.url, ssl=self.w.tls, compression=None, ping_interval=None,
                                    max_size=1 << 20, open_timeout=60, close_timeout=2,
                                    local_addr=(source_address(self.room, self.index), 0))
            self.reader = asyncio.create_task(self._read_ws())
        else:
            import socketio

            self.sio = socketio.AsyncClient(reconnection=False, ssl_verify=False)
            self.sio.on("*", self._on_event)
            await self.sio.connect(self.w.url, transports=["websocket"], wait_timeout=60)

    async def _read_ws(self) -> None:
        try:
            async for frame in self.ws:
                await self.on_msg(json.loads(frame))
        except Exception as exc:  # a bench client reports, it does not crash the worker
            self.w.errors.append(f"{type(exc).__name__}: {exc}")

    async def _on_event(self, event: str, data: Any = None) -> None:
        await self.on_msg({"type": event, **(data or {})})

    async def send(self, msg: dict[str, Any]) -> None:
        if self.ws is not None:
            await self.ws.send(json.dumps(msg, separators=(",", ":")))
        else:
            data = {k: v for k, v in msg.items() if k != "type"}
            await self.sio.emit(msg["type"], data)

    async def close(self) -> None:
        try:
            if self.ws is not None:
                await self.send({"type": "leave"})
                await self.ws.close()
                if self.reader is not None:
                    await asyncio.wait_for(self.reader, 5)
            elif self.sio is not None:
                await self.sio.disconnect()
        except Exception as exc:
            self.w.errors.append(f"close: {type(exc).__name__}: {exc}")
        self.ws = self.sio = None

    # -- the shared logic --------------------------------------------------------

    async def join(self) -> None:
        await self.send({"type": "join", "room": self.room, "name": f"bench {self.index}",
                         "audio": True, "video": True})
        await asyncio.wait_for(self.welcome, 60)

    async def negotiate(self) -> None:
        """The newcomer calls everyone who was there before it."""
        for peer in list(self.peers_before):
            await self.send({"type": "signal", "to": peer, "description": {"type": "offer", "sdp": self.offer}})

    async def send_candidates(self, to: str) -> None:
        for i in range(CANDIDATES):
            await self.send({"type": "signal", "to": to, "candidate": candidate(i, "neg")})

    async def on_msg(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "signal":
            cand = msg.get("candidate")
            if cand is not None:
                ufrag = cand.get("usernameFragment", "")
                if ufrag.startswith("t"):
                    self.w.record(time.monotonic_ns() - int(ufrag[1:]))
                else:
                    self.w.neg_received += 1
                return
            desc = msg.get("description") or {}
            self.w.neg_received += 1
            if desc.get("type") == "offer":
                await self.send({"type": "signal", "to": msg["from"],
                                 "description": {"type": "answer", "sdp": self.answer}})
            await self.send_candidates(msg["from"])
        elif kind == "welcome":
            self.id = msg["id"]
            self.peers_before = [p["id"] for p in msg["peers"]]
            self.peers.extend(self.peers_before)
            if not self.welcome.done():
                self.welcome.set_result(True)
        elif kind == "peer-joined":
            self.peers.append(msg["peer"]["id"])
        elif kind == "peer-left":
            if msg["id"] in self.peers:
                self.peers.remove(msg["id"])
        elif kind == "error":
            self.w.errors.append(f"error frame: {msg}")

    async def send_timed(self) -> bool:
        if not self.peers:
            return False
        to = self.peers[self.next_peer % len(self.peers)]
        self.next_peer += 1
        await self.send({"type": "signal", "to": to, "candidate": candidate(0, f"t{time.monotonic_ns()}")})
        return True


class Worker:
    def __init__(self, kind: str, url: str, rooms: list[str], tls: Any) -> None:
        self.kind, self.url, self.rooms, self.tls = kind, url, rooms, tls
        self.clients: list[Client] = []
        self.errors: list[str] = []
        self.samples: list[int] = []
        self.timed_received = 0
        self.neg_received = 0
        self.join_failed = asyncio.Event()

    def record(self, ns: int) -> None:
        self.timed_received += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(ns)

    async def join_room(self, room: str, gate: asyncio.Semaphore) -> None:
        async with gate:
            for i in range(6):
                client = Client(self, room, i)
                try:
                    await client.connect()
                    await client.join()
                except Exception as exc:
                    self.errors.append(f"join {room}/{i}: {type(exc).__name__}: {exc}")
                    await client.close()
                    self.join_failed.set()
                    return
                self.clients.append(client)

    async def phase_join(self, timeout: float) -> dict[str, Any]:
        """Join every room, 8 at a time. The first client that cannot join ends the phase:
        the size cannot be held then, and waiting for the rest would only cost time."""
        t0 = time.monotonic()
        self.clients = []
        self.join_failed = asyncio.Event()
        gate = asyncio.Semaphore(8)
        tasks = [asyncio.create_task(self.join_room(r, gate)) for r in self.rooms]
        failed = asyncio.create_task(self.join_failed.wait())
        all_joined = asyncio.gather(*tasks)
        await asyncio.wait([all_joined, failed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        timed_out = not all_joined.done()
        for t in [*tasks, failed]:
            t.cancel()  # a no-op on those that finished
        await asyncio.gather(*tasks, failed, return_exceptions=True)
        await asyncio.sleep(0.5)  # let the last peer-joined frames land
        return {"joined": sum(1 for c in self.clients if c.id), "wanted": 6 * len(self.rooms),
                "seconds": time.monotonic() - t0, "timed_out": timed_out}

    async def phase_negotiate(self, timeout: float) -> dict[str, Any]:
        self.neg_received = 0
        expected = sum(len(c.peers) * (1 + CANDIDATES) for c in self.clients)
        t0 = time.monotonic()
        await asyncio.gather(*(c.negotiate() for c in self.clients), return_exceptions=True)
        deadline = t0 + timeout
        while self.neg_received < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return {"expected": expected, "received": self.neg_received, "seconds": time.monotonic() - t0}

    async def phase_steady(self, rate: float, duration: float, start_at: float) -> dict[str, Any]:
        """Send `rate` timed relays per second for `duration` s, spread over the clients."""
        self.samples, self.timed_received = [], 0
        clients = [c for c in self.clients if c.peers]
        random.shuffle(clients)
        total = int(rate * duration)
        sent = 0
        await asyncio.sleep(max(0.0, start_at - time.time()))
        t0 = time.monotonic()
        i = 0
        gave_up = False
        behind_since: float | None = None
        while sent < total and clients:
            elapsed = time.monotonic() - t0
            if elapsed > duration * 1.5 + 5:
                break  # bounded: give up rather than run on
            if sent - self.timed_received > rate * 1.0 + 50:
                # More than a second's worth of frames in flight: latencies of seconds. For
                # 3 s in a row, that is the server, not a hiccup of the shared machine: the
                # 50 ms p99 is out of reach, so stop rather than wait out the duration.
                behind_since = behind_since if behind_since is not None else elapsed
                if elapsed - behind_since > 3:
                    gave_up = True
                    break
            else:
                behind_since = None
            due = min(total, int(elapsed * rate) + 1) - sent
            for _ in range(due):
                client = clients[i % len(clients)]
                i += 1
                try:
                    if await client.send_timed():
                        sent += 1
                except Exception as exc:
                    self.errors.append(f"send: {type(exc).__name__}: {exc}")
                    clients.remove(client)
                    if not clients:
                        break
            await asyncio.sleep(0.004)
        send_seconds = time.monotonic() - t0
        deadline = time.monotonic() + 5
        while self.timed_received < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return {"sent": sent, "received": self.timed_received, "send_seconds": send_seconds,
                "samples": self.samples, "gave_up": gave_up}

    async def phase_leave(self, timeout: float) -> dict[str, Any]:
        t0 = time.monotonic()
        gate = asyncio.Semaphore(64)

        async def one(c: Client) -> None:
            async with gate:
                await c.close()

        await asyncio.wait([asyncio.create_task(one(c)) for c in self.clients] or [asyncio.sleep(0)], timeout=timeout)
        left = len(self.clients)
        self.clients = []
        return {"left": left, "seconds": time.monotonic() - t0}

    async def serve(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        phases: dict[str, Callable[..., Any]] = {"join": self.phase_join, "negotiate": self.phase_negotiate,
                                                 "steady": self.phase_steady, "leave": self.phase_leave}
        while True:
            cmd, args = await loop.run_in_executor(None, conn.recv)
            if cmd == "stop":
                break
            self.errors = []
            result = await phases[cmd](*args)
            result["errors"] = self.errors[:5]
            result["error_count"] = len(self.errors)
            conn.send(result)
        for c in self.clients:
            await c.close()
        conn.send({"stopped": True})


def worker_main(kind: str, url: str, rooms: list[str], conn: Connection) -> None:
    import logging
    import os

    from common import insecure_context, raise_nofile

    raise_nofile(20000)
    logging.disable(logging.CRITICAL)  # aiohttp/engineio chatter on close
    tls = insecure_context() if url.startswith(("wss:", "https:")) else None
    if os.environ.get("BENCH_PROFILE_WORKERS"):  # a profile per worker, for looking at client cost
        import cProfile

        cProfile.runctx("asyncio.run(Worker(kind, url, rooms, tls).serve(conn))", globals(), locals(),
                        f"/tmp/bench-worker-{os.getpid()}.prof")
        return
    asyncio.run(Worker(kind, url, rooms, tls).serve(conn))


class LoadGen:
    """The parent side: start workers, run phases on all of them, gather results."""

    def __init__(self, kind: str, url: str, rooms: int, workers: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        names = [f"bench-{i}" for i in range(rooms)]
        self.procs = []
        self.conns = []
        for w in range(workers):
            mine = names[w::workers]
            if not mine:
                continue
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(kind, url, mine, child), daemon=True)
            p.start()
            self.procs.append(p)
            self.conns.append(parent)
        self.rooms = rooms

    def run(self, cmd: str, *args: Any, timeout: float = 300) -> list[dict[str, Any]]:
        for c in self.conns:
            c.send((cmd, args))
        out = []
        deadline = time.monotonic() + timeout
        for c in self.conns:
            if not c.poll(max(0.1, deadline - time.monotonic())):
                raise TimeoutError(f"load generator: phase {cmd} did not finish in {timeout}s")
            out.append(c.recv())
        return out

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def close(self) -> None:
        for c in self.conns:
            try:
                c.send(("stop", ()))
            except OSError:
                pass
        for c in self.conns:
            try:
                if c.poll(15):
                    c.recv()
            except (OSError, EOFError):
                pass
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(5)

    def __enter__(self) -> "LoadGen":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
