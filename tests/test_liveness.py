"""The hub's sweep on a fake clock: which sockets get a ping, and which are closed."""

from __future__ import annotations

from typing import Any, cast

from meshcall.rooms import Rooms
from meshcall.signaling import Hub


class FakeSocket:
    def __init__(self, now: float, peer_id: str | None) -> None:
        self.heard = self.pinged = now
        self.peer_id = peer_id
        self.pings: list[float] = []
        self.closed: tuple[int, str] | None = None

    def send_ping(self) -> None:
        self.pings.append(self.pinged)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def run_sweeps(sockets: list[FakeSocket], seconds: float, busy: set[int] = set()) -> None:
    now = [1000.0]
    hub = Hub(Rooms(6, 8.0), clock=lambda: now[0], ping_after=5.5)
    hub.open_sockets.update(cast(Any, s) for s in sockets)
    for step in range(1, int(seconds / 0.5) + 1):
        now[0] = 1000.0 + step * 0.5
        for i in busy:
            sockets[i].heard = now[0]  # a frame arrived
        hub.sweep()


def test_sockets_that_talk_are_never_pinged() -> None:
    busy = FakeSocket(1000.0, "p1")
    run_sweeps([busy], 30.0, busy={0})
    assert busy.pings == [] and busy.closed is None


def test_a_quiet_joined_socket_is_pinged_once_per_period() -> None:
    quiet = FakeSocket(1000.0, "p1")  # its place in a room is the grace period's business
    run_sweeps([quiet], 20.0)
    assert quiet.pings == [1005.5, 1011.0, 1016.5]
    assert quiet.closed is None


def test_an_unjoined_socket_that_stops_answering_is_closed() -> None:
    silent = FakeSocket(1000.0, None)
    run_sweeps([silent], 20.0)
    assert silent.pings == [1005.5]
    assert silent.closed == (1000, "ping timed out")

