"""Allocation quotas on real sockets: per person, per source address, in total."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from meshcall import settings
from meshcall.turn import codec
from meshcall.turn.codec import Attr, Class, Method
from meshcall.turn.credentials import rest_credentials
from meshcall.turn.limits import RESERVATION_LIFETIME

from .conftest import SECRET, FakeClock, LiveServer, ServerFactory
from .stunclient import TestClient, error_code

# A page in a full room: 5 peer connections × 2 TURN URLs (UDP, TCP) × 2 (an ICE
# restart asks for new relays before the old ones expire).
FULL_ROOM_WORST_CASE = (settings.BY_NAME["max_peers"].default - 1) * 2 * 2


@contextmanager
def clients() -> Iterator[list[TestClient]]:
    opened: list[TestClient] = []
    try:
        yield opened
    finally:
        for client in opened:
            client.close()


def try_allocate(
    server: LiveServer, opened: list[TestClient], user: str, *, tcp: bool = False, ttl: int = 600, now: float | None = None
) -> int | None:
    """Allocate on a new connection for ``user``; None on success, else the error code."""
    client = TestClient(server.host, server.port, tcp=tcp)
    opened.append(client)
    client.login(*rest_credentials(SECRET, user, ttl, now=now))
    response = client.allocate()
    return None if response.cls == Class.SUCCESS else error_code(response)


def test_default_quota_fits_a_full_room_at_its_worst_and_follows_the_person(turn_factory: ServerFactory) -> None:
    wall = FakeClock(1_800_000_000.0)
    server = turn_factory.start(wall_clock=wall)
    quota = settings.BY_NAME["turn_max_allocations_per_user"].default
    assert quota >= FULL_ROOM_WORST_CASE
    with clients() as opened:
        for i in range(FULL_ROOM_WORST_CASE):
            if i == FULL_ROOM_WORST_CASE // 2:
                # The page gets fresh credentials halfway (a new username for the same peer id).
                wall.advance(3600)
            assert try_allocate(server, opened, "peer-1", tcp=i % 2 == 1, now=wall.now) is None, i
        for _ in range(quota - FULL_ROOM_WORST_CASE):
            assert try_allocate(server, opened, "peer-1", now=wall.now) is None
        # Yet another username for the same person: still the same quota.
        wall.advance(3600)
        assert try_allocate(server, opened, "peer-1", now=wall.now) == 486
        # Someone else is not affected.
        assert try_allocate(server, opened, "peer-2", now=wall.now) is None
    assert server.stats()["allocations_total"] == quota + 1


def test_quota_per_source_address(turn_factory: ServerFactory) -> None:
    server = turn_factory.start(max_allocations_per_ip=3)
    with clients() as opened:
        for i in range(3):
            assert try_allocate(server, opened, f"pupil-{i}") is None
        # A fourth person behind the same address: over the address's quota.
        assert try_allocate(server, opened, "pupil-3") == 486
        # The same person from another address is fine.
        other = TestClient(server.host, server.port, source="127.0.0.2")
        opened.append(other)
        other.login(*rest_credentials(SECRET, "pupil-3", 600))
        assert other.allocate().cls == Class.SUCCESS
    assert server.stats()["allocations_total"] == 4


def test_forget_user_frees_that_person_at_once(turn_factory: ServerFactory) -> None:
    server = turn_factory.start(max_allocations_per_user=3)
    with clients() as opened:
        for tcp in (False, True, False):
            assert try_allocate(server, opened, "leaver", tcp=tcp) is None
        assert try_allocate(server, opened, "stayer") is None
        assert try_allocate(server, opened, "leaver") == 486
        assert server.in_loop(server.server.forget_user, "leaver") == 3
        assert server.stats()["allocations"] == 1  # the stayer's
        # The TCP connection that carried one of them is closed.
        tcp_client = opened[1]
        assert tcp_client.tcp
        assert tcp_client.sock.recv(10) == b""
        # The first client's allocation is gone; the person can start again within quota.
        assert error_code(opened[0].request(Method.REFRESH)) == 437
        for _ in range(3):
            assert try_allocate(server, opened, "leaver") is None
        assert server.in_loop(server.server.forget_user, "nobody") == 0


def test_even_port_reservation_counts_against_the_quota_and_expires(turn_factory: ServerFactory) -> None:
    clock = FakeClock(1000.0)
    server = turn_factory.start(max_allocations_per_user=2, clock=clock)
    with clients() as opened:
        rtp = TestClient(server.host, server.port)
        opened.append(rtp)
        rtp.login(*rest_credentials(SECRET, "camera", 600))
        response = rtp.allocate([(Attr.EVEN_PORT, b"\x80")])
        assert response.cls == Class.SUCCESS, error_code(response)
        # The allocation and the port it reserved: the quota of 2 is used up.
        assert try_allocate(server, opened, "camera") == 486
        # Asking for a reservation needs room for two.
        assert try_allocate(server, opened, "camera-2") is None
        evens = TestClient(server.host, server.port)
        opened.append(evens)
        evens.login(*rest_credentials(SECRET, "camera-2", 600))
        assert error_code(evens.allocate([(Attr.EVEN_PORT, b"\x80")])) == 486
        # RFC 8656 §7.2: the reservation lapses after about 30 s, and its quota with it.
        clock.advance(RESERVATION_LIFETIME + 1)
        server.sweep()
        assert try_allocate(server, opened, "camera") is None


def test_even_port_reservation_goes_with_a_refresh_to_zero(turn_factory: ServerFactory) -> None:
    server = turn_factory.start(max_allocations_per_user=2)
    with clients() as opened:
        rtp = TestClient(server.host, server.port)
        opened.append(rtp)
        rtp.login(*rest_credentials(SECRET, "camera", 600))
        response = rtp.allocate([(Attr.EVEN_PORT, b"\x80")])
        assert response.cls == Class.SUCCESS, error_code(response)
        token = response.get(Attr.RESERVATION_TOKEN)
        assert token is not None
        assert rtp.request(Method.REFRESH, [(Attr.LIFETIME, codec.pack_u32(0))]).cls == Class.SUCCESS
        rtcp = TestClient(server.host, server.port)
        opened.append(rtcp)
        rtcp.login(*rest_credentials(SECRET, "camera", 600))
        assert error_code(rtcp.allocate([(Attr.RESERVATION_TOKEN, token)])) == 508
        # Both units of quota are free again.
        assert try_allocate(server, opened, "camera") is None
        assert try_allocate(server, opened, "camera") is None


def test_forget_user_while_an_allocation_is_being_set_up_gives_its_quota_back(turn_factory: ServerFactory) -> None:
    # The person leaves between an Allocate and the step that sets its relay up, so that
    # step never runs: what the request took (quota, relay socket) must still come back.
    server = turn_factory.start(max_allocations_per_user=1)
    allocator = server.server._allocator
    on_allocate = allocator.on_allocate
    forgotten: list[int] = []

    def then_forget(*args: object) -> None:
        on_allocate(*args)  # type: ignore[arg-type]
        forgotten.append(server.server.forget_user("hasty"))

    with clients() as opened:
        allocator.on_allocate = then_forget  # type: ignore[method-assign, assignment]
        try:
            client = TestClient(server.host, server.port, timeout=0.5)
            opened.append(client)
            client.login(*rest_credentials(SECRET, "hasty", 600))
            message = codec.Message(Method.ALLOCATE, Class.REQUEST, b"x" * 12, [(Attr.REQUESTED_TRANSPORT, b"\x11\x00\x00\x00")])
            message.add(Attr.USERNAME, client.username.encode()).add(Attr.REALM, client.realm).add(Attr.NONCE, client.nonce)
            client.send_raw(message.encode(client.key, fingerprint=True))
            deadline = time.monotonic() + 5
            while not forgotten and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            allocator.on_allocate = on_allocate  # type: ignore[method-assign]
        assert forgotten == [1]
        # The clean-up runs once the cancelled set-up is done: a few turns of the loop.
        held = None
        while held != (0, 0) and time.monotonic() < deadline:
            held = server.in_loop(lambda: (len(allocator.table.pending), allocator.table.held))
        assert held == (0, 0)
        # Within the quota of one again.
        assert try_allocate(server, opened, "hasty") is None
