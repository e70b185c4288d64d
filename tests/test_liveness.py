"""The hub's sweep on a fake clock: which sockets get a ping, and which are closed."""

from __future__ import annotations

from typing import Any, cast

from meshcall.rooms import Rooms
from meshcall.signaling import Hub


class FakeSocket:
    def __init__(self, now: float, peer_id: str | None) -> None:
        self.heard = self.pinged = self.opened = now
        self.peer_id = peer_id
        self.server_closed = False
        self.pings: list[float] = []
        self.closed: tuple[int, str] | None = None

    def send_ping(self) -> None:
        self.pings.append(self.pinged)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.server_closed = True


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



class StarvedSocket(FakeSocket):
    """A joined socket whose page does not answer (its browser is starved or gone)."""

    def __init__(self, now: float, peer_id: str, acked: bool) -> None:
        super().__init__(now, peer_id)
        self.acked = acked
        self.ws_connection = None  # as after a close: the hub drops it without closing

    def send_ping(self) -> None:  # nothing comes back from the page
        super().send_ping()


def hub_with_peer(monkeypatch: Any, acked: bool) -> tuple[Hub, list[float], str, StarvedSocket]:
    import meshcall.signaling as signaling

    now = [1000.0]
    rooms = Rooms(6, 8.0)
    hub = Hub(rooms, clock=lambda: now[0], ping_after=5.5)
    peer = rooms.join("r", "a", True, True, now[0]).peer
    sock = StarvedSocket(now[0], peer.id, acked)
    hub.sockets[peer.id] = cast(Any, sock)
    hub.open_sockets.add(cast(Any, sock))
    monkeypatch.setattr(signaling, "unacked", lambda s: 0 if s.acked else 120)
    return hub, now, peer.id, sock


def sweep_for(hub: Hub, now: list[float], seconds: float) -> None:
    end = now[0] + seconds
    while now[0] < end:
        now[0] += 0.5
        hub.sweep()


def test_a_page_whose_machine_acknowledges_our_pings_keeps_its_place_past_the_grace(monkeypatch: Any) -> None:
    hub, now, pid, sock = hub_with_peer(monkeypatch, acked=True)
    sweep_for(hub, now, 30.0)
    assert hub.rooms.get(pid) is not None and sock.pings


def test_but_not_for_ever(monkeypatch: Any) -> None:
    from meshcall.signaling import STARVED_HOLD_SECONDS

    hub, now, pid, _ = hub_with_peer(monkeypatch, acked=True)
    sweep_for(hub, now, STARVED_HOLD_SECONDS + 8.0 - 1.0)
    assert hub.rooms.get(pid) is not None
    sweep_for(hub, now, 8.0 + 2.0)  # not heard for STARVED_HOLD_SECONDS: then the grace runs
    assert hub.rooms.get(pid) is None


def test_a_page_whose_machine_acknowledges_nothing_goes_after_the_grace(monkeypatch: Any) -> None:
    hub, now, pid, _ = hub_with_peer(monkeypatch, acked=False)
    sweep_for(hub, now, 7.5)
    assert hub.rooms.get(pid) is not None
    sweep_for(hub, now, 1.0)
    assert hub.rooms.get(pid) is None


def test_time_the_server_itself_did_not_run_counts_against_no_one(monkeypatch: Any) -> None:
    hub, now, pid, _ = hub_with_peer(monkeypatch, acked=False)
    hub.sweep()
    now[0] += 12.0  # the server's process was starved for 12 s: longer than the grace
    hub.sweep()
    assert hub.rooms.get(pid) is not None
    sweep_for(hub, now, 8.0)
    assert hub.rooms.get(pid) is None
