"""Rooms and peers: pure state, no sockets, no event loop.

The signaling handler asks this module what changed and whom to tell, then sends
(snapshot, then notify). Time is passed in, so tests drive it directly."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from .errors import UserError


def new_peer_id() -> str:
    return "p" + secrets.token_hex(5)


def new_token() -> str:
    return secrets.token_urlsafe(18)


@dataclass
class Peer:
    id: str
    token: str
    room: str
    name: str
    audio: bool
    video: bool
    last_seen: float = 0.0

    def public(self) -> dict[str, object]:
        """What the other members may know: never the token."""
        return {"id": self.id, "name": self.name, "audio": self.audio, "video": self.video}


@dataclass
class JoinResult:
    peer: Peer
    others: list[Peer]  # members before the join, to list in the welcome
    resumed: bool


@dataclass
class Room:
    name: str
    peers: dict[str, Peer] = field(default_factory=dict)


class Rooms:
    def __init__(self, max_peers: int = 6, grace: float = 8.0) -> None:
        self.max_peers = max_peers
        self.grace = grace
        self._rooms: dict[str, Room] = {}
        self._peers: dict[str, Peer] = {}
        self._tokens: dict[str, str] = {}

    # -- queries -----------------------------------------------------------------

    def get(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

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

    # -- changes -----------------------------------------------------------------

    def join(self, room: str, name: str, audio: bool, video: bool, now: float,
             resume: str | None = None) -> JoinResult:
        """Add a peer, or give a dropped one its place back when its token matches."""
        if resume is not None:
            peer_id = self._tokens.get(resume)
            peer = self._peers.get(peer_id) if peer_id else None
            if peer is not None and peer.room == room:
                peer.name, peer.audio, peer.video = name, audio, video
                peer.last_seen = now
                return JoinResult(peer, self.others(peer.id), resumed=True)
        target = self._rooms.get(room)
        if target is not None and len(target.peers) >= self.max_peers:
            raise UserError("room-full", f"This room is full ({self.max_peers} people).")
        if target is None:
            target = self._rooms[room] = Room(room)
        peer = Peer(new_peer_id(), new_token(), room, name, audio, video, now)
        while peer.id in self._peers:  # vanishingly rare, but identity must be unique
            peer.id = new_peer_id()
        others = list(target.peers.values())
        target.peers[peer.id] = peer
        self._peers[peer.id] = peer
        self._tokens[peer.token] = peer.id
        return JoinResult(peer, others, resumed=False)

    def remove(self, peer_id: str) -> list[Peer]:
        """Forget a peer; returns whom to tell. Empty rooms are forgotten too."""
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

    def expired(self, now: float) -> list[str]:
        """Ids of peers not heard from within the grace period (the caller removes them).

        A live socket answers the server's pings every few seconds, so only a dropped
        peer, or one whose socket died silently, goes this long unheard."""
        return [p.id for p in self._peers.values() if now - p.last_seen >= self.grace]

    def set_media(self, peer_id: str, audio: bool, video: bool) -> Peer | None:
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.audio, peer.video = audio, video
        return peer

    def rename(self, peer_id: str, name: str) -> Peer | None:
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.name = name
        return peer
