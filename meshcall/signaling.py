"""The WebSocket transport: decode a frame, ask the rooms, send what they say.

Identity comes from the server: a socket is bound to the peer the server made for it,
and every relayed frame is stamped with that peer's id."""

from __future__ import annotations

import fcntl
import logging
import struct
import termios
import time
from typing import Any, Callable

from tornado import ioloop, websocket
from tornado.iostream import StreamClosedError

from . import __version__, protocol
from .errors import CLOSE_CODES, DEFAULT_CLOSE_CODE, ProtocolError, SignalingError, UserError
from .protocol import parse, wire
from .buckets import Bucket
from .rooms import Peer, Rooms
from .wsprotocol import StrictWebSocketProtocol

log = logging.getLogger(__name__)

RATE_PER_SECOND = 100.0
RATE_BURST = 400.0
CLEAN_CLOSE_CODES = (1000, 1001)
# By default TURN credentials live 24 h and pages get new ones every 12 h.
ICE_REFRESH_SECONDS = 12 * 3600.0
# A socket not heard from for this long gets a WebSocket ping. Pages send their own ping
# every 2.5 s, so a live page is rarely pinged; a starved page's JavaScript may not run
# for seconds, but the browser's network stack still answers this ping, which keeps
# its place however slow the page is.
PING_AFTER_SECONDS = 5.5
# A socket that ends with no close frame at all (TCP closed under it) had a browser that
# is gone: a page that is alive closes with a close frame, even when it gives up a socket
# itself. Its place is held this long (or the grace period if shorter), not the whole
# grace that a silent or starved page gets; a page whose network changed (the browser
# resets its sockets) is back within a second or two.
VANISHED_HOLD_SECONDS = 8.0
# How long past the grace a page whose machine still acknowledges our pings (but whose
# browser does not answer them) keeps its place: a starved device catches up well
# within this; a tab frozen for good does not, and goes.
STARVED_HOLD_SECONDS = 60.0
# A socket must join a room within this long: an unjoined socket can do nothing but
# ping, and a stranger's sockets that only ping would otherwise be held for ever.
JOIN_DEADLINE_SECONDS = 60.0
SWEEP_MS = 500
# Bytes queued for one socket that does not read. A page needs a few offers of at most
# 64 KiB in flight; past this the reader is too slow to keep a call going anyway, and
# the bound keeps the server's memory at (sockets x this) at worst: 1 MiB x 2,000
# sockets = 2 GiB is the theoretical ceiling, reached only if every socket stalls.
MAX_BACKLOG_BYTES = 1024 * 1024
# Signals for a peer whose socket dropped are held until it resumes (or is dropped):
# a renegotiation in flight must not be lost to a Wi-Fi blip. A page sends a few offers,
# answers and a dozen candidates per connection; past these bounds the oldest go.
# A sweep later than this after the previous one means the server itself was starved:
# frames may be waiting unread, so that time counts against no peer's grace.
SWEEP_STALL_SECONDS = 1.5
HOLD_FRAMES = 64
HOLD_BYTES = 256 * 1024

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


def unacked(handler: websocket.WebSocketHandler) -> int | None:
    """Bytes sent on this socket that the other machine's kernel has not acknowledged
    (TIOCOUTQ is SIOCOUTQ on Linux); None where it cannot be read.

    A page whose browser is starved answers pings late, but its machine's kernel still
    acknowledges what we send within milliseconds: 0 here after a ping means the device
    is there, however slow its page. A vanished one acknowledges nothing."""
    conn = getattr(handler, "ws_connection", None)
    stream = getattr(conn, "stream", None)
    sock = getattr(stream, "socket", None)
    if sock is None:
        return None
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return None
    return int(struct.unpack("i", raw)[0])


def backlog(conn: websocket.WebSocketProtocol) -> int:
    """Bytes written to a socket but not yet taken by the kernel (Tornado's write buffer)."""
    stream = getattr(conn, "stream", None)
    buffer = getattr(stream, "_write_buffer", None)
    return len(buffer) if buffer is not None else 0


def local_host(request: Any) -> str:
    """The appliance address a client used to reach us, for its ICE server URLs: a .local
    name in the Host header may not resolve inside the browser's ICE agent. A dual-stack
    socket names an IPv4 client's side as ::ffff:a.b.c.d; the plain IPv4 form is the one
    STUN and TURN URLs need."""
    stream = getattr(request.connection, "stream", None)
    sock = getattr(stream, "socket", None)
    if sock is not None:
        try:
            addr = str(sock.getsockname()[0]).split("%")[0]
            if addr not in ("", "0.0.0.0", "::"):
                return addr.removeprefix("::ffff:")
        except OSError:
            pass
    return str(request.host_name)


class Hub:
    """What the signaling sockets share: the rooms, the live sockets, the ICE settings."""

    def __init__(self, rooms: Rooms, ice_for: IceServersFor | None = None,
                 clock: Callable[[], float] = time.monotonic, ice_refresh: float = ICE_REFRESH_SECONDS,
                 ping_after: float = PING_AFTER_SECONDS, on_gone: Callable[[str], None] | None = None,
                 max_backlog: int = MAX_BACKLOG_BYTES, join_deadline: float = JOIN_DEADLINE_SECONDS,
                 vanished_hold: float = VANISHED_HOLD_SECONDS) -> None:
        self.join_deadline = join_deadline
        self.vanished_hold = vanished_hold
        self.rooms = rooms
        self.on_gone = on_gone  # told the id of every peer removed for good (frees its relays)
        self.max_backlog = max_backlog
        self.sockets: dict[str, SignalingHandler] = {}  # joined sockets by peer id
        # peer id -> (sender id, frame) relayed while that peer had no socket
        self.held: dict[str, list[tuple[str, bytes]]] = {}
        self.open_sockets: set[SignalingHandler] = set()  # every open socket, joined or not
        self.ping_after = ping_after
        self.ice_for: IceServersFor = ice_for or (lambda peer_id, host: {"iceServers": [], "iceTransportPolicy": "all"})
        self.clock = clock
        self.closing = False
        self.ice_refresh = ice_refresh
        self._timers: list[ioloop.PeriodicCallback] = []
        self.last_sweep: float | None = None

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
        frame = wire(msg)  # once, whatever the number of recipients
        for peer in peers:
            sock = self.sockets.get(peer.id)
            if sock is not None:
                sock.send_frame(frame)

    def relay(self, sender: Peer, to: Peer, msg: dict[str, Any]) -> None:
        """Send a `signal`; hold it if the recipient is between sockets (see HOLD_FRAMES)."""
        frame = wire(protocol.relayed(msg, sender.id))
        sock = self.sockets.get(to.id)
        if sock is not None:
            sock.send_frame(frame)
            return
        held = self.held.setdefault(to.id, [])
        held.append((sender.id, frame))
        while len(held) > HOLD_FRAMES or (len(held) > 1 and sum(len(f) for _, f in held) > HOLD_BYTES):
            held.pop(0)

    def deliver_held(self, peer: Peer) -> None:
        """Hand a resumed peer what was relayed to it meanwhile, from senders still there."""
        sock = self.sockets.get(peer.id)
        for sender_id, frame in self.held.pop(peer.id, []):
            sender = self.rooms.get(sender_id)
            if sock is not None and sender is not None and sender.room == peer.room:
                sock.send_frame(frame)

    def drop(self, peer_id: str, why: str) -> None:
        """Remove a peer for good and tell the rest of its room."""
        self.held.pop(peer_id, None)
        peer = self.rooms.get(peer_id)
        if peer is None:
            return
        recipients = self.rooms.remove(peer_id)
        sock = self.sockets.pop(peer_id, None)
        log.info("room %s peer %s: left (%s); %d remain", peer.room, peer_id, why, len(recipients))
        self.send(recipients, protocol.peer_left(peer_id))
        if sock is not None and sock.ws_connection is not None:
            sock.peer_id = None
            sock.close(1000, "removed")
        if self.on_gone is not None:
            self.on_gone(peer_id)

    def sweep(self) -> None:
        """Remove peers not heard from within the grace period (dead or dropped sockets),
        ping sockets that have gone quiet, and close unjoined ones that stopped answering.

        Pinging only quiet sockets, rather than every socket on a timer of its own, keeps
        a busy server from spending a frame each way per socket every few seconds on
        sockets whose frames already show they are alive."""
        now = self.clock()
        if self.last_sweep is not None and now - self.last_sweep > SWEEP_STALL_SECONDS:
            self.rooms.forgive(now - self.last_sweep - SWEEP_MS / 1000)
        self.last_sweep = now
        # A joined socket that went quiet after a ping, but whose every byte the other
        # machine has acknowledged, belongs to a slow page, not a vanished one: it keeps
        # its place while last heard within STARVED_HOLD_SECONDS (then the grace runs).
        for peer_id, sock in list(self.sockets.items()):
            if sock.pinged > sock.heard and now - sock.heard < self.rooms.grace + STARVED_HOLD_SECONDS \
                    and unacked(sock) == 0:
                self.rooms.touch(peer_id, now)
        for peer_id in self.rooms.expired(now):
            self.drop(peer_id, "gone")
        for sock in list(self.open_sockets):
            if sock.peer_id is None and now - sock.opened >= self.join_deadline and not sock.server_closed:
                sock.close(1000, "join timed out")
                continue
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
        frame = wire(protocol.shutdown(reason))
        for sock in socks:
            sock.send_frame(frame)
            sock.close(1001, "server going away")
        return len(socks)


class SignalingHandler(websocket.WebSocketHandler):
    def initialize(self, hub: Hub) -> None:
        self.hub = hub
        self.peer_id: str | None = None
        self.rate = Bucket(RATE_BURST, RATE_PER_SECOND)
        self.server_closed = False
        self.ice_issued = 0.0
        self.heard = self.pinged = self.opened = hub.clock()

    def ice_servers(self, peer_id: str) -> dict[str, Any]:
        self.ice_issued = self.hub.clock()
        return self.hub.ice_for(peer_id, self._local_host())

    def send_ice(self, peer_id: str) -> None:
        self.send_frame(wire(protocol.ice_servers(self.ice_servers(peer_id))))

    # Tornado's default check_origin refuses an Origin whose host differs from the Host
    # header (403): exactly the same-origin rule wanted here, so it is not overridden.
    # A request without Origin is not from a browser page (browsers always send it on a
    # WebSocket upgrade), so it cannot be a cross-site page riding on the user's
    # network position; Tornado accepts it, and native clients rely on that.

    def get_websocket_protocol(self) -> websocket.WebSocketProtocol | None:
        if self.request.headers.get("Sec-WebSocket-Version") != "13":
            return None
        params = websocket._WebSocketParams(ping_interval=self.ping_interval, ping_timeout=self.ping_timeout,
                                            max_message_size=self.max_message_size,
                                            compression_options=None)  # see get_compression_options
        return StrictWebSocketProtocol(self, False, params)

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
        if backlog(conn) + len(frame) > self.hub.max_backlog:
            # The page does not read what it is sent: drop it rather than grow without
            # bound. Its place is kept for the grace period, like any lost connection.
            log.info("signaling peer %s: closed, %d bytes unread (too-slow)", self.peer_id, backlog(conn))
            self.close(CLOSE_CODES["too-slow"], "too-slow")
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

    def on_ping(self, data: bytes) -> None:
        # WebSocket-level pings cost the server a pong each: they count against the
        # same rate limit as frames.
        if not self._rate_ok():
            self._fail(ProtocolError("rate-limited", "Too many messages; slow down."))

    def on_invalid_utf8(self) -> None:
        self._fail(ProtocolError("bad-utf8", "A text frame must be valid UTF-8."))

    def on_pong(self, data: bytes) -> None:
        self.heard = self.hub.clock()
        if self.peer_id is not None:
            self.hub.rooms.touch(self.peer_id, self.heard)

    def _rate_ok(self) -> bool:
        self.heard = self.hub.clock()
        return self.rate.take(self.heard)

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
        self.send_frame(wire(err.frame()))
        if err.fatal:
            self.close(CLOSE_CODES.get(err.code, DEFAULT_CLOSE_CODE), err.code)

    def _require_peer(self) -> Peer:
        peer = self.hub.rooms.get(self.peer_id) if self.peer_id else None
        if peer is None:
            raise UserError("not-joined", "Join a room first.")
        return peer

    def _local_host(self) -> str:
        return local_host(self.request)

    # -- message handlers ----------------------------------------------------------

    def do_join(self, msg: dict[str, Any]) -> None:
        if self.peer_id is not None:
            raise UserError("already-joined", "This connection is already in a room.")
        result = self.hub.rooms.join(msg["room"], msg["name"], msg["audio"], msg["video"],
                                     self.hub.clock(), msg["resume"], self.request.remote_ip or "", msg["passcode"])
        peer = result.peer
        old = self.hub.sockets.get(peer.id)
        if old is not None and old is not self:
            old.peer_id = None  # the resumed page replaces a socket not yet seen dead
            old.close(1000, "replaced")
        self.peer_id = peer.id
        self.hub.sockets[peer.id] = self
        self.send_frame(wire(protocol.welcome(peer.id, peer.token, peer.room,
                                              [p.public() for p in result.others], self.ice_servers(peer.id),
                                              self.hub.rooms.max_peers, result.resumed, __version__,
                                              self._room().state())))
        log.info("room %s peer %s: %s from %s (%d in room)", peer.room, peer.id,
                 "resumed" if result.resumed else "joined", self.request.remote_ip, len(result.others) + 1)
        notice = protocol.peer_updated if result.resumed else protocol.peer_joined
        self.hub.send(result.others, notice(peer.public()))
        history = self.hub.rooms.chat_history(peer.id)
        if history:
            self.send_frame(wire(protocol.chat_history(history)))
        if result.resumed:
            self.hub.deliver_held(peer)

    def do_signal(self, msg: dict[str, Any]) -> None:
        peer = self._require_peer()
        other = self.hub.rooms.route(peer.id, msg["to"])
        self.hub.relay(peer, other, msg)

    def do_media(self, msg: dict[str, Any]) -> None:
        peer = self._require_peer()
        recipients = self.hub.rooms.set_media(peer.id, msg["audio"], msg["video"], msg["screen"])
        self.hub.send(recipients, protocol.peer_updated(peer.public()))

    def do_rename(self, msg: dict[str, Any]) -> None:
        peer = self._require_peer()
        recipients = self.hub.rooms.rename(peer.id, msg["name"])
        self.hub.send(recipients, protocol.peer_updated(peer.public()))

    def do_hand(self, msg: dict[str, Any]) -> None:
        peer = self._require_peer()
        recipients = self.hub.rooms.raise_hand(peer.id, msg["raised"])
        self.hub.send(recipients + [peer], protocol.peer_updated(peer.public()))

    def do_chat(self, msg: dict[str, Any]) -> None:
        peer = self._require_peer()
        recipients, message = self.hub.rooms.chat(peer.id, msg["text"], self.hub.clock(), int(time.time() * 1000))
        self.hub.send(recipients, protocol.chat(message))

    def do_lock(self, msg: dict[str, Any]) -> None:
        peer = self._require_peer()
        recipients = self.hub.rooms.lock(peer.id, msg["locked"])
        log.info("room %s peer %s: %s the room", peer.room, peer.id, "locked" if msg["locked"] else "unlocked")
        self.hub.send(recipients, protocol.room_updated(self._room().state(), peer.name))

    def do_passcode(self, msg: dict[str, Any]) -> None:
        peer = self._require_peer()
        recipients = self.hub.rooms.set_passcode(peer.id, msg["passcode"])
        # Never the passcode itself: not in the log, not to the others.
        log.info("room %s peer %s: %s the passcode", peer.room, peer.id, "set" if msg["passcode"] else "removed")
        self.hub.send(recipients, protocol.room_updated(self._room().state(), peer.name))

    def _room(self) -> Any:
        room = self.hub.rooms.room_of(self.peer_id or "")
        if room is None:
            raise UserError("not-joined", "Join a room first.")
        return room

    def do_ping(self, msg: dict[str, Any]) -> None:
        self.send_frame(wire(protocol.pong()))

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
                if self.close_code is None and not self.server_closed:
                    self.hub.rooms.vanished(peer_id, self.hub.clock(), self.hub.vanished_hold)
                log.info("room %s peer %s: connection lost (code %s); holding the place", peer.room, peer_id,
                         self.close_code)
