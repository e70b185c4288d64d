"""aioice's TURN client allocating and relaying through meshcall's server."""

from __future__ import annotations

import asyncio

import pytest
from aioice.turn import create_turn_endpoint

from meshcall.turn.credentials import rest_credentials

from .conftest import SECRET, LiveServer


class _Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"echo:" + data, addr)  # type: ignore[attr-defined]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_aioice_allocates_and_relays_to_echo(turn_server: LiveServer, transport: str) -> None:
    username, password = rest_credentials(SECRET, "carol", 600)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        echo_transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
        echo_addr = echo_transport.get_extra_info("sockname")[:2]
        turn, client = await create_turn_endpoint(
            _Collect, ("127.0.0.1", turn_server.port), username, password, lifetime=600, transport=transport
        )
        try:
            relayed = turn.get_extra_info("sockname")
            assert relayed[0] == "127.0.0.1"
            assert 40000 <= relayed[1] <= 59999
            for i in range(5):
                turn.sendto(f"hello {i}".encode(), echo_addr)
                data, addr = await asyncio.wait_for(client.received.get(), 5)
                assert data == f"echo:hello {i}".encode()
                assert tuple(addr) == tuple(echo_addr)
        finally:
            turn.close()
            echo_transport.close()
            await asyncio.sleep(0.2)

    asyncio.run(asyncio.wait_for(scenario(), 30))
    stats = turn_server.stats()
    assert stats["allocations_total"] == 1
    assert stats["packets_to_peers"] >= 5 and stats["packets_to_clients"] >= 5
