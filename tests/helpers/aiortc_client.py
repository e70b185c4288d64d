"""A meshcall participant that is not a browser: aiortc, driven by docs/protocol.md alone.

It joins a room over `wss://…/ws`, calls everyone in `welcome.peers` (one audio, then one
video transceiver, both sendrecv), answers the offers of newcomers, and counts the frames
it decodes from each remote peer. It follows the negotiation rules of the page:

- every `signal` names its RTCPeerConnection with `conn`; whoever makes the first offer of
  a fresh connection picks a new one, the answerer adopts it. An offer with another `conn`
  means the other side built a fresh connection (the old one is closed, the offer answered
  on a new one); an answer or candidate with a stale `conn` is dropped;
- aiortc cannot roll back: an offer that arrives while our own offer is outstanding is
  ignored, and we wait for the answer to ours;
- candidates: ours are all in the SDP; trickled ones are accepted (`null` ends them).

`MeshClient` is asyncio; `Participant` runs one in a thread of its own, so that tests
using Playwright's sync API can drive it with plain calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import ssl
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine, TypeVar

from aiortc import (MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpTransceiver,
                    RTCSessionDescription)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from aiortc.sdp import candidate_from_sdp
from av import VideoFrame
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

log = logging.getLogger(__name__)
T = TypeVar("T")

PING_EVERY = 2.0


def new_conn() -> str:
    """A fresh connection id: 1-32 of A-Za-z0-9_- (docs/protocol.md, signal)."""
    return "a" + secrets.token_hex(8)


def session_id(sdp: str) -> str | None:
    """The o= session id of an SDP (aiortc makes a new one for every offer)."""
    for line in sdp.splitlines():
        if line.startswith("o="):
            parts = line[2:].split()
            return parts[1] if len(parts) > 1 else None
    return None


class PatternVideoTrack(VideoStreamTrack):
    """Small frames whose brightness changes every frame, so every frame is worth encoding."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=self.width, height=self.height, format="yuv420p")
        luma = 16 + (self.count * 3) % 200
        self.count += 1
        for plane, value in zip(frame.planes, (luma, 128, 128)):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        return frame


@dataclass
class Link:
    """Our RTCPeerConnection to one remote peer, named by `conn`."""

    peer_id: str
    conn: str | None
    pc: RTCPeerConnection
    frames: Counter = field(default_factory=Counter)  # decoded frames (video) / audio frames received
    offers_sent: list[str] = field(default_factory=list)  # o= session id of each offer we sent
    answers_received: int = 0
    offers_answered: int = 0
    ignored_offers: int = 0  # offers that came while ours was outstanding
    dropped_stale: int = 0  # answers/candidates with another conn, or an answer nobody asked for
    extra_tracks: list[MediaStreamTrack] = field(default_factory=list)
    readers: list[asyncio.Task] = field(default_factory=list)

    @property
    def signaling_state(self) -> str:
        return str(self.pc.signalingState)

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)


class ProtocolViolation(AssertionError):
    pass


class MeshClient:
    """One participant, speaking docs/protocol.md over a real WebSocket."""

    def __init__(self, url: str, room: str, name: str = "aiortc", *, ssl_context: ssl.SSLContext | None = None,
                 audio: bool = True, video: bool = True) -> None:
        self.url = url.replace("https://", "wss://").rstrip("/") + "/ws"
        self.origin = url.rstrip("/")
        self.room, self.name, self.audio, self.video = room, name, audio, video
        self.ssl_context = ssl_context or _unverified()
        self.ws: WebSocketClientConnection | None = None
        self.id: str | None = None
        self.token: str | None = None
        self.welcome: dict[str, Any] | None = None
        self.peers: dict[str, dict[str, Any]] = {}  # what the room says about each peer
        self.links: dict[str, Link] = {}
        self.closed_links: list[Link] = []
        self.ice_servers: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []  # error frames from the server
        self.received: list[dict[str, Any]] = []  # every frame, in order
        self.signals_without_conn = 0
        # what each page says it shows of our video (`view`): a client that sends one
        # fixed stream has nothing to cap, but keeps it to show it was understood
        self.views: dict[str, dict[str, int]] = {}
        self.pongs = 0
        self.failures: list[str] = []  # exceptions inside our own handlers
        self._welcome: asyncio.Future[dict[str, Any]] | None = None
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._workers: dict[str, asyncio.Task] = {}
        self._tasks: list[asyncio.Task] = []
        self._call_on_welcome = True
        # Keyed by remote peer (not by connection), so a rebuild and a signal never interleave.
        self._locks: dict[str, asyncio.Lock] = {}
        self._readers: list[asyncio.Task] = []  # each socket's reader and pinger

    # ------------------------------------------------------------ socket
    async def connect(self) -> None:
        request = HTTPRequest(self.url, ssl_options=self.ssl_context, headers={"Origin": self.origin},
                              connect_timeout=5, request_timeout=5)
        self.ws = await websocket_connect(request, max_message_size=256 * 1024)
        ws = self.ws
        self._readers += [asyncio.ensure_future(self._read(ws)), asyncio.ensure_future(self._ping(ws))]

    def send(self, msg: dict[str, Any]) -> None:
        if self.ws is None:
            raise ProtocolViolation(f"no socket to send {msg.get('type')}")
        self.ws.write_message(json.dumps(msg))

    async def _read(self, ws: WebSocketClientConnection) -> None:
        while True:
            text = await ws.read_message()
            if text is None:
                break
            msg = json.loads(text)
            self.received.append(msg)
            try:
                self._dispatch(msg)
            except Exception as exc:  # a test must see it; the socket goes on
                self.failures.append(f"{msg.get('type')}: {exc!r}")
                log.exception("aiortc client: handling %s", msg.get("type"))
        if self.ws is ws:
            self.ws = None
        ws.close()  # the server closed it: let go of it on our side too

    async def _ping(self, ws: WebSocketClientConnection) -> None:
        while self.ws is ws:
            await asyncio.sleep(PING_EVERY)
            if self.ws is ws:
                ws.write_message(json.dumps({"type": "ping"}))

    # ------------------------------------------------------------ room
    async def join(self, resume: bool = False, call: bool = True, timeout: float = 10) -> dict[str, Any]:
        """Open a socket if needed, send `join`, wait for `welcome`. With call=False nobody is
        called yet (call_everyone() does it), so a test can look at the id first."""
        if self.ws is None:
            await self.connect()
        loop = asyncio.get_running_loop()
        self._welcome = loop.create_future()
        self._call_on_welcome = call
        msg: dict[str, Any] = {"type": "join", "room": self.room, "name": self.name, "audio": self.audio,
                               "video": self.video}
        if resume:
            if self.token is None:
                raise ProtocolViolation("nothing to resume: no welcome yet")
            msg["resume"] = self.token
        self.send(msg)
        return await asyncio.wait_for(self._welcome, timeout)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "welcome":
            self._on_welcome(msg)
        elif kind == "peer-joined":
            # The newcomer calls us; we wait for its offer.
            self.peers[msg["peer"]["id"]] = msg["peer"]
        elif kind == "peer-updated":
            self.peers[msg["peer"]["id"]] = msg["peer"]
        elif kind == "peer-left":
            self.peers.pop(msg["id"], None)
            self._spawn(self._forget(msg["id"]))
        elif kind == "signal":
            sender = msg["from"]
            if sender not in self._queues:
                self._queues[sender] = asyncio.Queue()
                self._workers[sender] = asyncio.ensure_future(self._signal_worker(sender))
            self._queues[sender].put_nowait(msg)
        elif kind == "ice-servers":
            self.ice_servers = msg["iceServers"]  # aiortc cannot change a running connection's servers
        elif kind == "error":
            self.errors.append(msg)
            if self._welcome is not None and not self._welcome.done():
                self._welcome.set_exception(ProtocolViolation(f"join refused: {msg}"))
        elif kind == "pong":
            self.pongs += 1
        elif kind == "shutdown":
            pass
        else:
            raise ProtocolViolation(f"unknown frame type {kind!r}")

    def _on_welcome(self, msg: dict[str, Any]) -> None:
        fresh = not msg.get("resumed") or msg["id"] != self.id
        self.id, self.token, self.welcome = msg["id"], msg["token"], msg
        self.ice_servers = msg.get("iceServers", [])
        present = {p["id"]: p for p in msg["peers"]}
        self.peers = dict(present)
        if fresh:
            for peer_id in list(self.links):
                self._spawn(self._forget(peer_id))
        else:
            # Resumed: our connections were never touched; catch up on who came and went.
            for peer_id in list(self.links):
                if peer_id not in present:
                    self._spawn(self._forget(peer_id))
        if self._call_on_welcome:
            for peer_id in present:
                if fresh or peer_id not in self.links:
                    self._spawn(self.call(peer_id))
        if self._welcome is not None and not self._welcome.done():
            self._welcome.set_result(msg)

    async def call_everyone(self) -> None:
        await asyncio.gather(*(self.call(peer_id) for peer_id in self.peers))

    async def leave(self) -> None:
        """Leave on purpose, then close the socket cleanly and every connection."""
        if self.ws is not None:
            self.send({"type": "leave"})
            ws, self.ws = self.ws, None
            ws.close(1000)
        for peer_id in list(self.links):
            await self._forget(peer_id)

    def drop(self) -> None:
        """Lose the socket without a close frame: a TCP reset, as when the network fails."""
        ws, self.ws = self.ws, None
        if ws is None:
            return
        sock = ws.protocol.stream.socket  # type: ignore[union-attr]
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.protocol.stream.close()  # type: ignore[union-attr]
        ws.close()  # nothing left to send on it: only lets go of it

    async def close(self) -> None:
        if self.ws is not None:
            ws, self.ws = self.ws, None
            ws.close(1000)
        for task in self._readers:  # nothing new arrives from here on
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        # Let each connection finish the step it is in (under its lock) before stopping
        # the handlers: a step cancelled while aioice gathers leaks the sockets bound so
        # far, which it adds to its connection only once all are bound. Holding every
        # lock, no signal can reach a connection being closed.
        held: list[asyncio.Lock] = []
        try:
            for lock in list(self._locks.values()):
                try:
                    await asyncio.wait_for(lock.acquire(), 10)
                except asyncio.TimeoutError:
                    continue  # a step that hangs: cancelled below like the rest
                held.append(lock)
            for task in [*self._tasks, *self._workers.values()]:
                task.cancel()
            await asyncio.gather(*self._tasks, *self._workers.values(), return_exceptions=True)
            # Every connection, each on its own: one that fails to close must not leave
            # the others' ICE sockets open for the tests that come after.
            links = list(self.links.values())
            self.links.clear()
            results = await asyncio.gather(*(self._close_link(link) for link in links), return_exceptions=True)
        finally:
            for lock in held:
                lock.release()
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failures.append(repr(task.exception()))

    # ------------------------------------------------------------ connections
    def _new_link(self, peer_id: str, conn: str | None) -> Link:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        link = Link(peer_id, conn, pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            link.readers.append(asyncio.ensure_future(self._count(link, track)))

        self.links[peer_id] = link
        return link

    async def _count(self, link: Link, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            link.frames[track.kind] += 1

    async def _forget(self, peer_id: str) -> None:
        async with self._lock(peer_id):
            link = self.links.pop(peer_id, None)
            if link is not None:
                await self._close_link(link)

    async def _close_link(self, link: Link) -> None:
        self.closed_links.append(link)
        await link.pc.close()
        for reader in link.readers:
            reader.cancel()
        await asyncio.gather(*link.readers, return_exceptions=True)

    def _send_signal(self, link: Link, payload: dict[str, Any]) -> None:
        msg: dict[str, Any] = {"type": "signal", "to": link.peer_id, **payload}
        if link.conn is not None:
            msg["conn"] = link.conn
        self.send(msg)

    def _local_description(self, link: Link) -> dict[str, str]:
        desc = link.pc.localDescription
        return {"type": desc.type, "sdp": desc.sdp}

    async def call(self, peer_id: str) -> Link:
        """A fresh connection to peer_id, with a new conn: audio then video, both sendrecv."""
        async with self._lock(peer_id):
            old = self.links.pop(peer_id, None)
            if old is not None:
                await self._close_link(old)
            link = self._new_link(peer_id, new_conn())
            link.pc.addTransceiver(AudioStreamTrack(), direction="sendrecv")
            link.pc.addTransceiver(PatternVideoTrack(), direction="sendrecv")
            await self._offer(link)
            return link

    async def renegotiate(self, peer_id: str, change: Callable[[RTCPeerConnection], Any] | None = None,
                          hold: asyncio.Event | None = None) -> str:
        """Change the connection (if asked) and offer again on the same conn; returns the new
        offer's o= session id. With `hold`, the offer is set locally but only sent once the
        event is set (to make it cross an offer from the other side)."""
        async with self._lock(peer_id):
            link = self.links[peer_id]
            if change is not None:
                change(link.pc)
            await link.pc.setLocalDescription(await link.pc.createOffer())
        if hold is not None:
            await hold.wait()
        async with self._lock(peer_id):
            if self.links.get(peer_id) is not link or link.pc.signalingState != "have-local-offer":
                raise ProtocolViolation("the held offer was overtaken")
            sid = session_id(link.pc.localDescription.sdp) or ""
            link.offers_sent.append(sid)
            self._send_signal(link, {"description": self._local_description(link)})
            return sid

    def add_video(self, pc: RTCPeerConnection) -> RTCRtpTransceiver:
        """A change worth renegotiating: a second video track, send only."""
        track = PatternVideoTrack(160, 120)
        link = next(lk for lk in self.links.values() if lk.pc is pc)
        link.extra_tracks.append(track)
        return pc.addTransceiver(track, direction="sendonly")

    async def _offer(self, link: Link) -> None:
        await link.pc.setLocalDescription(await link.pc.createOffer())
        link.offers_sent.append(session_id(link.pc.localDescription.sdp) or "")
        self._send_signal(link, {"description": self._local_description(link)})

    def _lock(self, peer_id: str) -> asyncio.Lock:
        if peer_id not in self._locks:
            self._locks[peer_id] = asyncio.Lock()
        return self._locks[peer_id]

    async def _signal_worker(self, peer_id: str) -> None:
        queue = self._queues[peer_id]
        while True:
            msg = await queue.get()
            try:
                async with self._lock(peer_id):
                    await self._on_signal(msg)
            except Exception as exc:
                self.failures.append(f"signal from {peer_id}: {exc!r}")
                log.exception("aiortc client: signal from %s", peer_id)

    async def _on_signal(self, msg: dict[str, Any]) -> None:
        peer_id, conn = msg["from"], msg.get("conn")
        if "view" in msg:  # about what we send, not about a connection
            self.views[peer_id] = msg["view"]
            return
        if conn is None:
            self.signals_without_conn += 1
        link = self.links.get(peer_id)
        desc = msg.get("description")
        if desc is not None and desc["type"] == "offer":
            # aiortc closes a connection by itself once the other side's DTLS closes.
            if link is None or (conn is not None and conn != link.conn) or link.pc.signalingState == "closed":
                # The other side built a fresh connection: answer on a fresh one of ours.
                if link is not None:
                    self.links.pop(peer_id)
                    await self._close_link(link)
                link = self._new_link(peer_id, conn)
            if link.pc.signalingState == "have-local-offer":
                link.ignored_offers += 1  # we cannot roll back: wait for the answer to ours
                return
            await link.pc.setRemoteDescription(RTCSessionDescription(sdp=desc["sdp"], type="offer"))
            self._attach_local(link)
            await link.pc.setLocalDescription(await link.pc.createAnswer())
            link.offers_answered += 1
            self._send_signal(link, {"description": self._local_description(link)})
            return
        stale = link is None or (conn is not None and conn != link.conn)
        if desc is not None:  # an answer
            if stale or link.pc.signalingState != "have-local-offer":
                if link is not None:
                    link.dropped_stale += 1
                return
            await link.pc.setRemoteDescription(RTCSessionDescription(sdp=desc["sdp"], type="answer"))
            link.answers_received += 1
            return
        if stale:
            if link is not None:
                link.dropped_stale += 1
            return
        cand = msg.get("candidate")
        if link.pc.remoteDescription is None:
            link.dropped_stale += 1  # a candidate of an offer we ignored
            return
        if cand is None or not cand.get("candidate"):
            await link.pc.addIceCandidate(None)
            return
        text = cand["candidate"]
        candidate = candidate_from_sdp(text.split(":", 1)[1] if text.startswith("candidate:") else text)
        candidate.sdpMid = cand.get("sdpMid")
        candidate.sdpMLineIndex = cand.get("sdpMLineIndex")
        await link.pc.addIceCandidate(candidate)

    def _attach_local(self, link: Link) -> None:
        """Answering a fresh connection: send our audio and video on the first transceiver of each kind."""
        for kind, make in (("audio", AudioStreamTrack), ("video", PatternVideoTrack)):
            wanted = self.audio if kind == "audio" else self.video
            ours = [t for t in link.pc.getTransceivers() if t.kind == kind]
            if wanted and ours and not any(t.sender.track for t in ours):
                link.pc.addTrack(make())

    # ------------------------------------------------------------ reading
    def frames_from(self, peer_id: str, kind: str = "video") -> int:
        link = self.links.get(peer_id)
        return link.frames[kind] if link else 0


def _unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Participant:
    """A MeshClient on an event loop in its own thread, with plain blocking calls."""

    def __init__(self, url: str, room: str, name: str = "aiortc", **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[str] = []
        self.loop.set_exception_handler(lambda loop, ctx: self.loop_errors.append(
            f"{ctx.get('message')} {ctx.get('exception')!r}"))
        self._thread = threading.Thread(target=self.loop.run_forever, name="aiortc-participant", daemon=True)
        self._thread.start()
        self.client: MeshClient = self.run(_make(url, room, name, kwargs))

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call_soon(self, fn: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(fn)

    # The calls tests use most; everything else through .client and .run().
    @property
    def id(self) -> str:
        assert self.client.id is not None
        return self.client.id

    def join(self, **kwargs: Any) -> dict[str, Any]:
        return self.run(self.client.join(**kwargs))

    def leave(self) -> None:
        self.run(self.client.leave())

    def drop(self) -> None:
        self.run(_call(self.client.drop))

    def link(self, peer_id: str) -> Link:
        return self.client.links[peer_id]

    def frames_from(self, peer_id: str, kind: str = "video") -> int:
        return self.client.frames_from(peer_id, kind)

    def problems(self) -> list[str]:
        return [*self.client.failures, *self.loop_errors]

    def close(self) -> None:
        try:
            self.run(self.client.close(), timeout=15)
        finally:
            try:
                self.run(_settle(), timeout=15)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            if not self.loop.is_running():
                self.loop.close()


async def _settle() -> None:
    """Let what closing started finish on this loop before it stops. asyncio closes a
    transport's socket in a callback one turn after close(), and aiortc cancels its DTLS
    and ICE tasks without waiting for them: stopping the loop at once would leave those
    sockets and tasks to the garbage collector, in whichever test runs next."""
    me = asyncio.current_task()
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        await asyncio.sleep(0.05)
        left = [t for t in asyncio.all_tasks() if t is not me]
        if not left or asyncio.get_running_loop().time() > deadline:
            break
    for task in left:  # still running after the bound: the same end asyncio.run gives them
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    await asyncio.sleep(0.05)  # the close callbacks of what the cancelled tasks let go of


async def _make(url: str, room: str, name: str, kwargs: dict[str, Any]) -> MeshClient:
    return MeshClient(url, room, name, **kwargs)


async def _call(fn: Callable[[], T]) -> T:
    return fn()
