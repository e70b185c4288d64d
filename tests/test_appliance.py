"""The appliance in-process: behaviour that needs a hand on its clock or its view of the network."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from helpers.procs import free_ports
from meshcall import netinfo
from meshcall.server import Appliance
from meshcall.settings import Config


def onboarding_page(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
        return resp.read().decode()


def served_certificate(port: int) -> x509.Certificate:
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    return x509.load_pem_x509_certificate(pem.encode())


def test_new_address_while_running_reissues_the_leaf_from_the_same_ca(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        http_port = free_ports(1)[0]
        app = Appliance(Config(host="127.0.0.1", port=0, http_port=http_port, no_turn=True, data_dir=tmp_path))
        await app.start()
        try:
            before = await asyncio.to_thread(served_certificate, app.port)
            assert app.refresh_certificate() is False  # nothing changed: nothing reissued
            new = ipaddress.ip_address("10.9.8.7")
            real = netinfo.interface_addresses
            monkeypatch.setattr(netinfo, "interface_addresses", lambda include_loopback=True: real() + [new])
            assert app.refresh_certificate() is True
            after = await asyncio.to_thread(served_certificate, app.port)
            sans = after.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert new in sans.get_values_for_type(x509.IPAddress)
            assert after.issuer == before.issuer and after.serial_number != before.serial_number
            # The new leaf verifies against the CA devices already trust.
            ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
            reader, writer = await asyncio.open_connection("127.0.0.1", app.port, ssl=ctx,
                                                           server_hostname="localhost")
            writer.close()
            await writer.wait_closed()
            # The onboarding page shows the certificate now served.
            page = await asyncio.to_thread(onboarding_page, http_port)
            assert app.cert is not None and app.cert.fingerprint in page
        finally:
            await app.stop()

    asyncio.run(scenario())


def test_someone_who_leaves_loses_their_relays_at_once(tmp_path: Path) -> None:
    """The TURN quota follows the person: when a peer leaves its room, the appliance
    frees its relay allocations instead of letting them run until they expire."""
    import json

    from tornado import httpclient, websocket

    from turn.stunclient import TestClient, error_code

    async def scenario() -> None:
        http_port, turn_port = free_ports(2)
        app = Appliance(Config(host="127.0.0.1", port=0, http_port=http_port, turn_port=turn_port,
                               data_dir=tmp_path, turn_allow_loopback=True))
        await app.start()
        try:
            ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
            conn = await websocket.websocket_connect(
                httpclient.HTTPRequest(f"wss://localhost:{app.port}/ws", ssl_options=ctx))
            await conn.write_message(json.dumps({"type": "join", "room": "r", "name": "n"}))
            welcome = json.loads(await conn.read_message())
            turn = next(s for s in welcome["iceServers"] if "username" in s)

            def allocate() -> None:
                with TestClient("127.0.0.1", turn_port) as client:
                    client.login(turn["username"], turn["credential"])
                    assert error_code(client.allocate()) is None

            await asyncio.to_thread(allocate)
            assert app.turn.forget_user(welcome["id"]) == 1  # the relay exists, tied to this person
            await asyncio.to_thread(allocate)
            await conn.write_message(json.dumps({"type": "leave"}))
            assert await conn.read_message() is None  # leave closes the socket
            conn.close()
            # Gone with the person: nothing left to release.
            assert app.turn.forget_user(welcome["id"]) == 0
        finally:
            await app.stop()

    asyncio.run(scenario())
