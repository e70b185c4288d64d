"""The WebSocket transport: decode a frame, ask the rooms, send what they say.

Identity comes from the server: a socket is bound to the peer the server made for it,
and every relayed frame is stamped with that peer's id."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from tornado import ioloop, websocket
from tornado.iostream import StreamClosedError

from . import __version__
from .errors import CLOSE_CODES, DEFAULT_CLOSE_CODE, ProtocolError, SignalingError, UserError
from .protocol import encode, parse
from .rooms import Peer, Rooms

log = logging.getLogger(__name__)

RATE_PER_SECOND = 100.0
RATE_BURST = 400.0
CLEAN_CLOSE_CODES = (1000, 1001)
# By default TURN credentials live 24 h and pages get new ones every 12 h.
ICE_REFRESH_SECONDS = 12 * 3600.0
# A socket not heard from for this long gets a WebSocket ping. Pages send their own ping
# every 5 s, so a live page is rarely pinged; an answer comes well within the 8 s grace.
PING_AFTER_SECONDS = 5.5
SWEEP_MS = 500

IceServersFor = Callable[[str, str], dict[str, Any]]


def write_text_frame(conn: websocket.WebSocketProtocol, frame: str | bytes) -> None:
    """Send one text frame without the asyncio Task that `write_message` makes per call.

    `write_message` wraps every write in a new Task so its Future can be awaited.
    Signaling never awaits a write (the stream buffers it, and a closed socket shows up in
    `on_close`), and with thousands of frames a second those Tasks cost ~8 % of the CPU and
    more than doubled the relay p99 (docs/benchmarks.md). Tornado's frame writer does the
    same write without one; `test_signaling` checks it is the path in use."""
    data = frame.encode() if isinstance(frame, str) else frame
    write_frame = getattr(conn, "_write_frame", None)
    if write_frame is None:  # a Tornado without it: the public, slower way
        conn.write_message(data)
        return
    write_frame(True, 0x1, data)


class Hub:
    """What the signaling sockets share: the rooms, the live sockets, the ICE settings."""

    def __init__(self, rooms: Rooms, ice_for: IceServersFor | None = None,
                 clock: Callable[[], float] = time.monotonic, ice_refresh: float = ICE_REFRESH_SECONDS,
                 ping_after: float = PING_AFTER_SECONDS) -> None:
        self.rooms = rooms
        self.sockets: dict[str, SignalingHandler] = {}  # joined sockets by peer id
        self.open_sockets: set[SignalingHandler] = set()  # every open socket, joined or not
        self.ping_after = ping_after
        self.ice_for: IceServersFor = ice_for or (lambda peer_id, host: {"iceServers": [], "iceTransportPolicy": "all"})
        self.clock = clock
        self.closing = False
        self.ice_refresh = ice_refresh
        self._timers: list[ioloop.PeriodicCallback] = []

    def start(self) -> None:
        if not self._timers:
            self._timers = [ioloop.PeriodicCallback(self.sweep, SWEEP_MS),
                            ioloop.PeriodicCallback(self.refresh_ice, min(60.0, self.ice_refresh / 4) * 1000)]
            for timer in self._timers:
                timer.start()

    def stop(self) -> None:
        for timer in self._timers:
            timer.stop()
        self._timers = []

    def refresh_ice(self) -> None:
        """Hand out fresh TURN credentials before the old ones expire, so a page that
        stays in its room for days (a room display) keeps a working relay."""
        now = self.clock()
        for peer_id, sock in list(self.sockets.items()):
            if now - sock.ice_issued >= self.ice_refresh:
                sock.send_ice(peer_id)

    def send(self, peers: list[Peer], msg: dict[str, Any]) -> None:
        if not peers:
            return
        frame = encode(msg).encode()  # once, whatever the number of recipients
        for peer in peers:
            sock = self.sockets.get(peer.id)
            if sock is not None:
                sock.send_frame(frame)

    def drop(self, peer_id: str, why: str) -> None:
        """Remove a peer for good and tell the rest of its room."""
        peer = self.rooms.get(peer_id)
        if peer is None:
            return
        recipients = self.rooms.remove(peer_id)
        sock = self.sockets.pop(peer_id, None)
        log.info("room %s peer %s: left (%s); %d remain", peer.room, peer_id, why, len(recipients))
        self.send(recipients, {"type": "peer-left", "id": peer_id})
        if sock is not None and sock.ws_connection is not None:
            sock.peer_id = None
            sock.close(1000, "removed")

    def sweep(self) -> None:
        """Remove peers not heard from within the grace period (dead or dropped sockets),
        ping sockets that have gone quiet, and close unjoined ones that stopped answering.

        Pinging only quiet sockets, rather than every socket on a timer of its own, keeps
        a busy server from spending a frame each way per socket every few seconds on
        sockets whose frames already show they are alive."""
        now = self.clock()
        for peer_id in self.rooms.expired(now):
            self.drop(peer_id, "gone")
        for sock in list(self.open_sockets):
            quiet = now - sock.heard
            if quiet < self.ping_after:
                continue
            if sock.peer_id is None and quiet >= 2 * self.ping_after:
                sock.close(1000, "ping timed out")  # joined sockets go by the grace period
            elif now - sock.pinged >= self.ping_after:
                sock.pinged = now
                sock.send_ping()

    def shutdown(self, reason: str = "The meeting server is restarting.") -> int:
        """Tell every page the server is going away and close its socket (1001), joined
        or not."""
        self.closing = True
        socks = list(self.open_sockets)
        frame = encode({"type": "shutdown", "value": reason}).encode()
        for sock in socks:
            sock.send_frame(frame)
            sock.close(1001, "server going away")
        return len(socks)


class SignalingHandler(websocket.WebSocketHandler):
    def initialize(self, hub: Hub) -> None:
        self.hub = hub
        self.peer_id: str | None = None
        self.tokens = RATE_BURST
        self.refilled = hub.clock()
        self.server_closed = False
        self.ice_issued = 0.0
        self.heard = self.pinged = hub.clock()

    def ice_servers(self, peer_id: str) -> dict[str, Any]:
        self.ice_issued = self.hub.clock()
        return self.hub.ice_for(peer_id, self._local_host())

    def send_ice(self, peer_id: str) -> None:
        self.send_frame(encode({"type": "ice-servers", **self.ice_servers(peer_id)}))

    # Tornado's default check_origin refuses an Origin whose host differs from the Host
    # header (403): exactly the same-origin rule wanted here, so it is not overridden.

    def get_compression_options(self) -> None:
        return None  # SDP compresses well, but per-message deflate costs CPU per socket

    def open(self, *args: str, **kwargs: str) -> None:
        if self.hub.closing:
            self.close(1001, "server going away")
            return
        # Signaling is small frames that someone waits for (an answer, a candidate):
        # without this, Nagle's algorithm and delayed ACKs hold some back for ~40 ms.
        self.set_nodelay(True)
        self.heard = self.hub.clock()
        self.hub.open_sockets.add(self)

    def send_frame(self, frame: str | bytes) -> None:
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return
        try:
            write_text_frame(conn, frame)
        except (websocket.WebSocketClosedError, StreamClosedError):
            pass  # that socket is gone; its close handler cleans up

    def send_ping(self) -> None:
        try:
            self.ping()
        except websocket.WebSocketClosedError:
            pass  # closing already; its close handler cleans up

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.server_closed = True
        super().close(code, reason)

    def on_pong(self, data: bytes) -> None:
        self.heard = self.hub.clock()
        if self.peer_id is not None:
            self.hub.rooms.touch(self.peer_id, self.heard)

    def _rate_ok(self) -> bool:
        now = self.heard = self.hub.clock()
        self.tokens = min(RATE_BURST, self.tokens + (now - self.refilled) * RATE_PER_SECOND)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def on_message(self, message: str | bytes) -> None:
        try:
            if not self._rate_ok():
                raise ProtocolError("rate-limited", "Too many messages; slow down.")
            msg = parse(message)
            if self.peer_id is not None:
                self.hub.rooms.touch(self.peer_id, self.heard)
            getattr(self, "do_" + msg["type"])(msg)
        except SignalingError as err:
            self._fail(err)

    def _fail(self, err: SignalingError) -> None:
        where = f"peer {self.peer_id}" if self.peer_id else f"socket {self.request.remote_ip}"
        log.info("signaling %s: %s error %s (%s)", where, "protocol" if err.fatal else "user", err.code, err.value)
        self.send_frame(encode(err.frame()))
        if err.fatal:
            self.close(CLOSE_CODES.get(err.code, DEFAULT_CLOSE_CODE), err.code)

    def _require_peer(self) -> Peer:
        peer = self.hub.rooms.get(self.peer_id) if self.peer_id else None
        if peer is None:
            raise UserError("not-joined", "Join a room first.")
        return peer

    def _local_host(self) -> str:
        """The appliance address this peer used to reach us, for its ICE server URLs."""
        stream = getattr(self.request.connection, "stream", None)
        sock = getattr(stream, "socket", None)
        if sock is not None:
            try:
                addr = sock.getsockname()[0]
                if addr and addr not in ("0.0.0.0", "::"):
                    return str(addr).split("%")[0]
            except OSError:
                pass
        return self.request.host_name

    # -- message handlers ----------------------------------------------------------

    def do_join(self, msg: dict[str, Any]) -> None:
        if self.peer_id is not None:
            raise UserError("already-joined", "This connection is already in a room.")
        result = self.hub.rooms.join(msg["room"], msg["name"], msg["audio"], msg["video"],
                                     self.hub.clock(), msg["resume"])
        peer = result.peer
        old = self.hub.sockets.get(peer.id)
        if old is not None and old is not self:
            old.peer_id = None  # the resumed page replaces a socket not yet seen dead
            old.close(1000, "replaced")
        self.peer_id = peer.id
        self.hub.sockets[peer.id] = self
        welcome = {
            "type": "welcome", "id": peer.id, "token": peer.token, "room": peer.room,
            "peers": [p.public() for p in result.others],
            **self.ice_servers(peer.id),
            "maxPeers": self.hub.rooms.max_peers, "resumed": result.resumed, "version": __version__,
        }
        self.send_frame(encode(welcome))
        log.info("room %s peer %s: %s from %s (%d in room)", peer.room, peer.id,
                 "resumed" if result.resumed else "joined", self.request.remote_ip, len(result.others) + 1)
        if result.resumed:
            self.hub.send(result.others, {"type": "peer-updated", "peer": peer.public()})
        else:
            self.hub.send(result.others, {"type": "peer-joined", "peer": peer.public()})

    def do_signal(self, msg: dict[str, Any]) -> None:
        peer = self._require_peer()
        other = self.hub.rooms.get(msg.pop("to"))  # msg is parse()'s own fresh dict
        if other is None or other is peer or other.room != peer.room:
            raise UserError("unknown-peer", "That person is not in this room (any more).")
        msg["from"] = peer.id
        self.hub.send([other], msg)

    def do_media(self, msg: dict[str, Any]) -> None:
        peer = self._require_peer()
        self.hub.rooms.set_media(peer.id, msg["audio"], msg["video"])
        self.hub.send(self.hub.rooms.others(peer.id), {"type": "peer-updated", "peer": peer.public()})

    def do_rename(self, msg: dict[str, Any]) -> None:
        peer = self._require_peer()
        self.hub.rooms.rename(peer.id, msg["name"])
        self.hub.send(self.hub.rooms.others(peer.id), {"type": "peer-updated", "peer": peer.public()})

    def do_ping(self, msg: dict[str, Any]) -> None:
        self.send_frame(encode({"type": "pong"}))

    def do_leave(self, msg: dict[str, Any]) -> None:
        peer = self._require_peer()
        self.hub.drop(peer.id, "left")

    def on_close(self) -> None:
        self.hub.open_sockets.discard(self)
        peer_id, self.peer_id = self.peer_id, None
        if peer_id is None or self.hub.sockets.get(peer_id) is not self:
            return
        del self.hub.sockets[peer_id]
        if not self.server_closed and self.close_code in CLEAN_CLOSE_CODES:
            self.hub.drop(peer_id, f"closed {self.close_code}")
        else:
            # Unclean: the place stays until the grace period after it was last heard
            # from runs out (the sweep), so the page can resume.
            peer = self.hub.rooms.get(peer_id)
            if peer is not None:
                log.info("room %s peer %s: connection lost (code %s); holding the place", peer.room, peer_id,
                         self.close_code)
