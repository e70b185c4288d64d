"""Rooms and peers: pure state, no sockets, no event loop.

Every change returns whom to tell (snapshot, then notify): the signaling transport
builds the frames with protocol.py and only moves bytes. Time is passed in, so tests
drive it directly."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .buckets import Bucket, Buckets
from .errors import UserError

# New rooms one address may open: a burst, then a steady rate. A school behind one NAT
# address starting a room in each of 40 classrooms within the same minute fits the
# burst; one address opening thousands of rooms (each costs memory) does not.
NEW_ROOMS_BURST = 60
NEW_ROOMS_PER_SECOND = 1.0
# Wrong passcodes one address may try: 5, then one every 6 s (10 a minute). A person
# who mistypes is never slowed down; guessing a 6-digit code takes about 70 days.
PASSCODE_TRIES_BURST = 5
PASSCODE_TRIES_PER_SECOND = 1 / 6
# Chat: what a room remembers (in memory only) and how fast one person may write.
CHAT_HISTORY = 100
CHAT_BURST = 5
CHAT_PER_SECOND = 1.0


def new_peer_id() -> str:
    return "p" + secrets.token_hex(5)


def new_token() -> str:
    return secrets.token_urlsafe(18)


def _digest(passcode: str) -> bytes:
    # Kept only as a digest, so that no dump of the process's state shows the code.
    return hashlib.sha256(passcode.encode("utf-8")).digest()


@dataclass
class Peer:
    id: str
    token: str
    room: str
    name: str
    audio: bool
    video: bool
    last_seen: float = 0.0
    # Set when its socket ended without a close frame (the browser is gone): the place is
    # then held only until this time, however recently it was heard (see Rooms.vanished).
    vanish_deadline: float | None = None
    screen: str | None = None  # the stream id of its screen share, when it shares
    hand: int | None = None  # raised: its place in the order hands went up
    chat_rate: Bucket = field(default_factory=lambda: Bucket(CHAT_BURST, CHAT_PER_SECOND))

    def public(self) -> dict[str, object]:
        """What the other members may know: never the token."""
        return {"id": self.id, "name": self.name, "audio": self.audio, "video": self.video,
                "screen": self.screen, "hand": self.hand}


@dataclass
class JoinResult:
    peer: Peer
    others: list[Peer]  # members before the join, to list in the welcome
    resumed: bool


@dataclass
class Room:
    name: str
    peers: dict[str, Peer] = field(default_factory=dict)
    locked_by: str | None = None  # the name of who locked it; None: open
    passcode: bytes | None = None  # digest of the passcode; None: none
    chat: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=CHAT_HISTORY))
    chat_seq: int = 0
    hand_seq: int = 0

    def state(self) -> dict[str, object]:
        """What members may know about the room itself: never the passcode."""
        return {"locked": self.locked_by is not None, "lockedBy": self.locked_by,
                "passcode": self.passcode is not None}


class Rooms:
    def __init__(self, max_peers: int = 6, grace: float = 8.0, new_rooms_burst: float = NEW_ROOMS_BURST,
                 new_rooms_per_second: float = NEW_ROOMS_PER_SECOND) -> None:
        self.max_peers = max_peers
        self.grace = grace
        self._rooms: dict[str, Room] = {}
        self._peers: dict[str, Peer] = {}
        self._tokens: dict[str, str] = {}
        self.new_rooms = Buckets(new_rooms_burst, new_rooms_per_second)
        self.passcode_tries = Buckets(PASSCODE_TRIES_BURST, PASSCODE_TRIES_PER_SECOND)

    # -- queries -----------------------------------------------------------------

    def get(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

    def room_of(self, peer_id: str) -> Room | None:
        peer = self._peers.get(peer_id)
        return self._rooms.get(peer.room) if peer else None

    def others(self, peer_id: str) -> list[Peer]:
        peer = self._peers.get(peer_id)
        if peer is None:
            return []
        return [p for p in self._rooms[peer.room].peers.values() if p.id != peer_id]

    def members(self, room: str) -> list[Peer]:
        r = self._rooms.get(room)
        return list(r.peers.values()) if r else []

    @property
    def peer_count(self) -> int:
        return len(self._peers)

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    # -- joining and leaving ------------------------------------------------------

    def join(self, room: str, name: str, audio: bool, video: bool, now: float,
             resume: str | None = None, source: str = "", passcode: str | None = None) -> JoinResult:
        """Add a peer, or give a dropped one its place back when its token matches.

        A token of a peer in another room is not an error: the join is a fresh one. A
        resumed peer is already a member: a lock or passcode set meanwhile does not
        keep it out."""
        if resume is not None:
            peer_id = self._tokens.get(resume)
            peer = self._peers.get(peer_id) if peer_id else None
            if peer is not None and peer.room == room:
                peer.name, peer.audio, peer.video = name, audio, video
                peer.last_seen = now
                peer.vanish_deadline = None
                return JoinResult(peer, self.others(peer.id), resumed=True)
        target = self._rooms.get(room)
        if target is not None:
            self._admit(target, source, now, passcode)
        else:
            if not self.new_rooms.take(source, now):
                raise UserError("too-many-rooms", "Too many new rooms from this address; join an existing one or "
                                                  "try again in a minute.")
            target = self._rooms[room] = Room(room)
        peer = Peer(new_peer_id(), new_token(), room, name, audio, video, now)
        while peer.id in self._peers:  # vanishingly rare, but identity must be unique
            peer.id = new_peer_id()
        others = list(target.peers.values())
        target.peers[peer.id] = peer
        self._peers[peer.id] = peer
        self._tokens[peer.token] = peer.id
        return JoinResult(peer, others, resumed=False)

    def _admit(self, room: Room, source: str, now: float, passcode: str | None) -> None:
        """Refuse a newcomer to an existing room that is locked, protected or full."""
        if room.locked_by is not None:
            raise UserError("room-locked", f"This room was locked by {room.locked_by}.", lockedBy=room.locked_by)
        if room.passcode is not None:
            if passcode is None:
                raise UserError("passcode-required", "This room has a passcode.")
            # Out of tries, even the right code is not checked: a guesser learns nothing.
            if not self.passcode_tries.can_take(source, now):
                raise UserError("too-many-tries", "Too many wrong passcodes from this address; wait a minute.")
            if not hmac.compare_digest(_digest(passcode), room.passcode):
                self.passcode_tries.take(source, now)
                raise UserError("bad-passcode", "That passcode is not right.")
        if len(room.peers) >= self.max_peers:
            raise UserError("room-full", f"This room is full ({self.max_peers} people).", maxPeers=self.max_peers)

    def remove(self, peer_id: str) -> list[Peer]:
        """Forget a peer; returns whom to tell. Empty rooms are forgotten too, with
        their chat, lock and passcode."""
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            return []
        self._tokens.pop(peer.token, None)
        room = self._rooms[peer.room]
        room.peers.pop(peer_id, None)
        if not room.peers:
            del self._rooms[peer.room]
            return []
        return list(room.peers.values())

    def touch(self, peer_id: str, now: float) -> None:
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.last_seen = now

    def forgive(self, seconds: float) -> None:
        """The server itself did not run for `seconds`: that time counts against no one."""
        for peer in self._peers.values():
            peer.last_seen += seconds

    def vanished(self, peer_id: str, now: float, hold: float) -> None:
        """Its socket ended without a word: hold its place only `hold` seconds more."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.vanish_deadline = now + min(hold, self.grace)

    def expired(self, now: float) -> list[str]:
        """Ids of peers not heard from within the grace period, or vanished and past
        their shorter hold (the caller removes them).

        A live socket answers the server's pings every few seconds, so only a dropped
        peer, or one whose socket died silently, goes this long unheard."""
        return [p.id for p in self._peers.values()
                if now - p.last_seen >= self.grace or (p.vanish_deadline is not None and now >= p.vanish_deadline)]

    # -- what a peer says about itself -----------------------------------------------

    def route(self, sender_id: str, to: str) -> Peer:
        """The recipient of a `signal`: another member of the sender's room."""
        sender = self._peers.get(sender_id)
        other = self._peers.get(to)
        if sender is None or other is None or other is sender or other.room != sender.room:
            raise UserError("unknown-peer", "That person is not in this room (any more).")
        return other

    def set_media(self, peer_id: str, audio: bool, video: bool, screen: str | None = None) -> list[Peer]:
        """Record what a peer says it sends; returns whom to tell."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return []
        peer.audio, peer.video, peer.screen = audio, video, screen
        return self.others(peer_id)

    def rename(self, peer_id: str, name: str) -> list[Peer]:
        """Change a display name; returns whom to tell."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return []
        peer.name = name
        return self.others(peer_id)

    def raise_hand(self, peer_id: str, raised: bool) -> list[Peer]:
        """Raise or lower a hand; raised hands are numbered in the order they went up."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return []
        room = self._rooms[peer.room]
        if raised and peer.hand is None:
            room.hand_seq += 1
            peer.hand = room.hand_seq
        elif not raised:
            peer.hand = None
        return self.others(peer_id)

    # -- the room itself -------------------------------------------------------------

    def lock(self, peer_id: str, locked: bool) -> list[Peer]:
        """Lock or unlock a member's room; returns everyone in it (the locker too)."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return []
        room = self._rooms[peer.room]
        room.locked_by = peer.name if locked else None
        return list(room.peers.values())

    def set_passcode(self, peer_id: str, passcode: str | None) -> list[Peer]:
        """Set (or clear, with None) a member's room passcode; returns everyone in it."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return []
        room = self._rooms[peer.room]
        room.passcode = _digest(passcode) if passcode else None
        return list(room.peers.values())

    def chat(self, peer_id: str, text: str, now: float, wall_ms: int) -> tuple[list[Peer], dict[str, Any]]:
        """Stamp and keep a chat message (text checked by protocol.clean_text); returns
        everyone in the room and the message."""
        peer = self._peers.get(peer_id)
        if peer is None:
            raise UserError("not-joined", "Join a room first.")
        if not peer.chat_rate.take(now):
            raise UserError("chat-too-fast", "Slow down: wait a moment before the next message.")
        room = self._rooms[peer.room]
        room.chat_seq += 1
        message = {"id": room.chat_seq, "from": peer.id, "name": peer.name, "ts": wall_ms, "text": text}
        room.chat.append(message)
        return list(room.peers.values()), message

    def chat_history(self, peer_id: str) -> list[dict[str, Any]]:
        room = self.room_of(peer_id)
        return list(room.chat) if room else []
