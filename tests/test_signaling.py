"""Signaling over real sockets: a Tornado server on a free port and real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Callable
from unittest import mock

from hypothesis import HealthCheck, given, settings, strategies as st
from tornado import httpclient, websocket
from tornado.testing import AsyncHTTPTestCase, gen_test

from meshcall.paths import asset_dir
from meshcall.rooms import Rooms
from meshcall.signaling import Hub, SignalingHandler
from meshcall.web import SECURITY_HEADERS, AppContext, make_app

TIMEOUT = 5


class Client:
    def __init__(self, conn: websocket.WebSocketClientConnection) -> None:
        self.conn = conn

    async def send(self, msg: dict[str, Any] | str) -> None:
        await self.conn.write_message(msg if isinstance(msg, str) else json.dumps(msg))

    async def recv(self) -> dict[str, Any] | None:
        raw = await asyncio.wait_for(self.conn.read_message(), TIMEOUT)
        return None if raw is None else json.loads(raw)

    async def expect(self, kind: str) -> dict[str, Any]:
        msg = await self.recv()
        assert msg is not None, f"socket closed while waiting for {kind}"
        assert msg["type"] == kind, msg
        return msg

    async def closed(self) -> int | None:
        assert await asyncio.wait_for(self.conn.read_message(), TIMEOUT) is None
        return self.conn.close_code

    async def alive(self) -> None:
        await self.send({"type": "ping"})
        await self.expect("pong")

    async def join(self, room: str = "r", name: str = "n", **extra: Any) -> dict[str, Any]:
        await self.send({"type": "join", "room": room, "name": name, **extra})
        return await self.expect("welcome")


async def eventually(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Wait until the server side has caught up; fail with the condition still false."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition still false"
        await asyncio.sleep(0.01)


class ServerCase(AsyncHTTPTestCase):
    max_peers = 3
    grace = 1.5
    ice_refresh = 3600.0

    def _ice(self, peer: str, host: str) -> dict[str, Any]:
        self.issued += 1
        return {"iceServers": [{"urls": [f"stun:{host}:3478"], "username": f"{self.issued}:{peer}"}],
                "iceTransportPolicy": "all"}

    def get_app(self) -> Any:
        self.rooms = Rooms(self.max_peers, self.grace)
        self.issued = 0
        self.hub = Hub(self.rooms, self._ice, ice_refresh=self.ice_refresh, ping_after=0.2)
        self.hub.start()
        self.clients: list[Client] = []
        return make_app(AppContext(self.hub, asset_dir()))

    def tearDown(self) -> None:
        for c in self.clients:
            c.conn.close()
        self.hub.stop()
        super().tearDown()

    async def client(self, origin: str | None = None) -> Client:
        headers = {"Origin": origin} if origin else {}
        req = httpclient.HTTPRequest(self.get_url("/ws").replace("http", "ws"), headers=headers)
        client = Client(await websocket.websocket_connect(req))
        self.clients.append(client)
        return client


class SignalingTest(ServerCase):
    @gen_test
    async def test_join_assigns_identity_and_introduces_peers(self) -> None:
        a, b = await self.client(), await self.client()
        wa = await a.join(name="Ada")
        assert wa["id"].startswith("p") and len(wa["token"]) >= 20 and wa["peers"] == []
        assert wa["iceServers"] == [{"urls": ["stun:127.0.0.1:3478"], "username": f"1:{wa['id']}"}]
        assert wa["iceTransportPolicy"] == "all" and wa["maxPeers"] == 3
        wb = await b.join(name="Grace", video=False)
        assert wb["peers"] == [{"id": wa["id"], "name": "Ada", "audio": True, "video": True, "screen": None, "hand": None}]
        joined = await a.expect("peer-joined")
        assert joined["peer"] == {"id": wb["id"], "name": "Grace", "audio": True, "video": False,
                                 "screen": None, "hand": None}
        assert "token" not in json.dumps(joined)

    @gen_test
    async def test_relay_is_stamped_by_the_server_and_stays_in_the_room(self) -> None:
        a, b, c = await self.client(), await self.client(), await self.client()
        wa = await a.join()
        wb = await b.join()
        await a.expect("peer-joined")
        wc = await c.join(room="other")
        await a.send({"type": "signal", "to": wb["id"], "description": {"type": "offer", "sdp": "v=0"}})
        got = await b.expect("signal")
        assert got == {"type": "signal", "from": wa["id"], "description": {"type": "offer", "sdp": "v=0"}}
        await b.send({"type": "signal", "to": wa["id"], "candidate": None})
        assert (await a.expect("signal")) == {"type": "signal", "from": wb["id"], "candidate": None}
        # To someone in another room: a user error; nothing reaches them; the socket stays open.
        await a.send({"type": "signal", "to": wc["id"], "candidate": None})
        err = await a.expect("error")
        assert err["error"] == "unknown-peer" and err["fatal"] is False
        await a.alive()
        await c.alive()  # c received nothing but its pong

    @gen_test
    async def test_relayed_frames_are_written_without_a_task_each(self) -> None:
        # write_text_frame bypasses write_message's per-call Task (a measured cost);
        # this fails if a Tornado upgrade quietly sends it down the slow path.
        a, b = await self.client(), await self.client()
        await a.join()
        wb = await b.join()
        await a.expect("peer-joined")
        wrappers: list[str] = []
        real = asyncio.ensure_future

        def counting(coro: Any, **kw: Any) -> Any:
            if getattr(coro, "__qualname__", "").endswith("write_message.<locals>.wrapper"):
                wrappers.append(coro.__qualname__)
            return real(coro, **kw)

        with mock.patch("asyncio.ensure_future", counting):
            await a.send({"type": "signal", "to": wb["id"], "candidate": None})
            assert (await b.expect("signal"))["candidate"] is None
        assert len(wrappers) == 1, wrappers  # the test client's own send; none from the server

    @gen_test
    async def test_spoofed_sender_closes_only_that_socket(self) -> None:
        a, b = await self.client(), await self.client()
        await a.join()
        wb = await b.join()
        await a.expect("peer-joined")
        await b.send({"type": "signal", "to": "p0000000", "from": "p1111111", "candidate": None})
        err = await b.expect("error")
        assert err["error"] == "spoofed-sender" and err["fatal"] is True
        assert await b.closed() == 4400
        left = await a.expect("peer-left")  # a protocol close is not a clean close: held, then dropped
        assert left["id"] == wb["id"]
        await a.alive()

    @gen_test
    async def test_room_full_is_a_user_error(self) -> None:
        clients = [await self.client() for _ in range(4)]
        for c in clients[:3]:
            await c.join()
        await clients[3].send({"type": "join", "room": "r", "name": "late"})
        err = await clients[3].expect("error")
        assert err == {"type": "error", "error": "room-full", "value": "This room is full (3 people).", "fatal": False,
                       "maxPeers": 3}
        await clients[3].alive()
        assert len(self.rooms.members("r")) == 3
        (await clients[3].join(room="elsewhere"))  # the same socket can still join another room

    @gen_test
    async def test_media_state_and_rename_reach_the_room(self) -> None:
        a, b = await self.client(), await self.client()
        await a.join(name="Ada")
        wb = await b.join(name="Bob")
        await a.expect("peer-joined")
        await b.send({"type": "media", "audio": False, "video": True})
        upd = await a.expect("peer-updated")
        assert upd["peer"] == {"id": wb["id"], "name": "Bob", "audio": False, "video": True,
                               "screen": None, "hand": None}
        await b.send({"type": "rename", "name": "<b>Robert</b>"})
        upd = await a.expect("peer-updated")
        assert upd["peer"]["name"] == "<b>Robert</b>"

    @gen_test
    async def test_clean_close_removes_at_once_and_empty_room_is_forgotten(self) -> None:
        a, b = await self.client(), await self.client()
        await a.join()
        wb = await b.join()
        await a.expect("peer-joined")
        b.conn.close(1001)
        assert (await a.expect("peer-left"))["id"] == wb["id"]
        await a.send({"type": "leave"})
        assert await a.closed() == 1000
        await eventually(lambda: self.rooms.room_count == 0 and self.rooms.peer_count == 0)

    @gen_test
    async def test_unclean_drop_can_resume_same_id_within_grace(self) -> None:
        a, b = await self.client(), await self.client()
        await a.join()
        wb = await b.join(name="Bob")
        await a.expect("peer-joined")
        b.conn.protocol.stream.close()  # TCP gone, no close frame: like Wi-Fi dropping
        await asyncio.sleep(0.3)
        assert self.rooms.get(wb["id"]) is not None  # held for the grace period
        b2 = await self.client()
        again = await b2.join(name="Bob", resume=wb["token"])
        assert again["resumed"] is True and again["id"] == wb["id"]
        assert (await a.expect("peer-updated"))["peer"]["id"] == wb["id"]  # not peer-left
        await b2.send({"type": "signal", "to": again["peers"][0]["id"], "candidate": None})
        assert (await a.expect("signal"))["from"] == wb["id"]

    @gen_test
    async def test_signals_to_a_peer_between_sockets_are_held_until_it_resumes(self) -> None:
        a, b, c = await self.client(), await self.client(), await self.client()
        wa = await a.join()
        wb = await b.join()
        wc = await c.join()
        b.conn.protocol.stream.close()
        await eventually(lambda: wb["id"] not in self.hub.sockets)
        offer = {"type": "offer", "sdp": "v=0\r\n"}
        await a.send({"type": "signal", "to": wb["id"], "conn": "c1", "description": offer})
        await c.send({"type": "signal", "to": wb["id"], "candidate": None})
        await eventually(lambda: len(self.hub.held.get(wb["id"], [])) == 2)
        await c.send({"type": "leave"})  # c's signal is stale once c has gone
        await eventually(lambda: self.rooms.get(wc["id"]) is None)
        b2 = await self.client()
        again = await b2.join(resume=wb["token"])
        assert again["resumed"] is True
        held = await b2.expect("signal")
        assert held == {"type": "signal", "from": wa["id"], "conn": "c1", "description": offer}
        await b2.alive()  # nothing else came: c's candidate was not delivered
        assert wb["id"] not in self.hub.held

    @gen_test(timeout=15)
    async def test_a_quiet_live_socket_is_pinged_and_keeps_its_place(self) -> None:
        a, b = await self.client(), await self.client()
        await a.join()
        wb = await b.join()
        await a.expect("peer-joined")
        await asyncio.sleep(2 * self.grace)  # b sends nothing; its client answers pings
        assert self.rooms.get(wb["id"]) is not None
        await a.alive()
        await b.alive()

    @gen_test(timeout=15)
    async def test_unclean_drop_is_removed_after_grace(self) -> None:
        a, b = await self.client(), await self.client()
        await a.join()
        wb = await b.join()
        await a.expect("peer-joined")
        b.conn.protocol.stream.close()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        left = await a.expect("peer-left")
        assert left["id"] == wb["id"] and loop.time() - t0 < self.grace + 2
        b2 = await self.client()
        again = await b2.join(resume=wb["token"])
        assert again["resumed"] is False and again["id"] != wb["id"]

    @gen_test
    async def test_errors_before_join_and_double_join(self) -> None:
        a = await self.client()
        await a.send({"type": "media", "audio": True, "video": True})
        assert (await a.expect("error"))["error"] == "not-joined"
        await a.send({"type": "signal", "to": "p1234567", "candidate": None})
        assert (await a.expect("error"))["error"] == "not-joined"
        await a.join()
        await a.send({"type": "join", "room": "x", "name": "y"})
        assert (await a.expect("error"))["error"] == "already-joined"
        await a.send({"type": "join", "room": "bad room", "name": "y"})
        assert (await a.expect("error"))["error"] == "bad-room"  # checked before the room state
        await a.alive()

    @gen_test
    async def test_protocol_errors_close_with_their_codes(self) -> None:
        cases = [("{nope", "bad-json", 4400), (json.dumps({"type": "teleport"}), "unknown-type", 4400),
                 (json.dumps({"type": "media"}), "bad-field", 4400),
                 (json.dumps({"type": "ping", "pad": "x" * 70000}), "too-large", 4413)]
        for frame, code, close in cases:
            c = await self.client()
            await c.send(frame)
            err = await c.expect("error")
            assert (err["error"], err["fatal"]) == (code, True)
            assert await c.closed() == close

    @gen_test
    async def test_frames_are_sent_without_nagle_delay(self) -> None:
        import socket as _socket

        a = await self.client()
        wa = await a.join()
        server_side = self.hub.sockets[wa["id"]].ws_connection.stream.socket  # type: ignore[union-attr]
        assert server_side.getsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY) != 0

    @gen_test
    async def test_huge_frame_is_cut_off_by_the_websocket_layer(self) -> None:
        bystander = await self.client()
        await bystander.join()
        c = await self.client()
        await c.send(json.dumps({"type": "ping", "pad": "x" * 300_000}))
        assert await c.closed() == 1009
        await bystander.alive()

    @gen_test
    async def test_flood_is_rate_limited(self) -> None:
        other = await self.client()
        await other.join()
        c = await self.client()
        for _ in range(1000):
            if c.conn.protocol is None or c.conn.protocol.is_closing():
                break
            try:
                await c.send({"type": "ping"})
            except websocket.WebSocketClosedError:
                break
        codes = []
        while True:
            msg = await c.recv()
            if msg is None:
                break
            if msg["type"] == "error":
                codes.append(msg["error"])
        assert codes == ["rate-limited"] and c.conn.close_code == 4429
        await other.alive()

    @gen_test
    async def test_cross_origin_websocket_is_refused(self) -> None:
        with self.assertRaises(httpclient.HTTPClientError) as err:
            await self.client(origin="https://evil.example")
        assert err.exception.code == 403
        ok = await self.client(origin=f"http://127.0.0.1:{self.get_http_port()}")
        await ok.alive()

    @gen_test
    async def test_shutdown_tells_every_page_and_closes_going_away(self) -> None:
        a, waiting = await self.client(), await self.client()  # `waiting` has not joined yet
        await a.join()
        await waiting.alive()
        assert self.hub.shutdown() == 2
        for page in (a, waiting):
            assert (await page.expect("shutdown"))["value"]
            assert await page.closed() == 1001

    def test_every_response_has_the_security_headers(self) -> None:
        for path in ["/", "/r/some-room", "/static/index.html", "/healthz", "/missing", "/r/bad%20room",
                     "/qr/some-room.svg", "/meshcall-ca.crt"]:
            resp = self.fetch(path)
            for name, value in SECURITY_HEADERS.items():
                assert resp.headers.get(name) == value, (path, name)
        csp = SECURITY_HEADERS["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "connect-src 'self'" in csp
        assert "camera=(self)" in SECURITY_HEADERS["Permissions-Policy"]
        assert self.fetch("/r/bad%20room").code == 404
        assert self.fetch("/missing").code == 404

    def test_healthz_counts_rooms_and_peers(self) -> None:
        body = json.loads(self.fetch("/healthz").body)
        assert body["status"] == "ok" and body["rooms"] == 0 and body["peers"] == 0 and body["version"]

    def test_qr_code_is_an_svg_of_the_room_link(self) -> None:
        resp = self.fetch("/qr/team-room.svg")
        assert resp.code == 200 and resp.headers["Content-Type"] == "image/svg+xml"
        assert resp.body.startswith(b"<svg") and b"<path" in resp.body

    def test_a_room_display_qr_code_links_with_inroom(self) -> None:
        import io

        import segno

        def expected(url: str) -> bytes:
            out = io.BytesIO()
            segno.make(url, error="m").save(out, kind="svg", xmldecl=False, nl=False, scale=6, border=2,
                                            dark="#111", light="#fff")
            return out.getvalue()

        base = self.get_url("/r/team-room")
        assert self.fetch("/qr/team-room.svg?inroom=1").body == expected(base + "?inroom=1")
        # Anything else is the plain room link, and the appliance's own code has no room to be in.
        assert self.fetch("/qr/team-room.svg?inroom=yes").body == expected(base)
        assert self.fetch("/qr.svg?inroom=1").body == expected(self.get_url("/"))


class IceRefreshTest(ServerCase):
    ice_refresh = 0.4

    @gen_test
    async def test_long_stays_get_fresh_ice_servers(self) -> None:
        a = await self.client()
        wa = await a.join()
        fresh = await a.expect("ice-servers")
        assert fresh["iceServers"][0]["username"] == f"2:{wa['id']}"
        assert fresh["iceServers"] != wa["iceServers"] and fresh["iceTransportPolicy"] == "all"


# Text a stranger may send that is hard to pass on: lone surrogates (as JSON escapes),
# non-characters, NUL, joiners and bidirectional controls.
NASTY = st.sampled_from(["\ud800evil", "\udfff", "a\ud83d", "\ufffe", "\uffff", "\U0010ffff", "\x00", "\u202e",
                         "\u200d", "\ufdd0", "é" * 50, "<img src=x onerror=alert(1)>"])
VALUES = st.one_of(st.sampled_from(["join", "signal", "media", "rename", "ping", "leave", "hand", "chat", "lock",
                                    "passcode", "r", "p0000001"]),
                   st.none(), st.booleans(), st.integers(), st.text(max_size=30), NASTY,
                   st.dictionaries(st.text(max_size=5), st.text(max_size=10) | NASTY, max_size=3))
FRAMES = st.one_of(
    st.text(max_size=200),
    st.builds(json.dumps, st.dictionaries(
        st.sampled_from(["type", "room", "name", "to", "from", "candidate", "description", "audio", "video", "resume",
                         "conn", "view", "screen", "raised", "text", "locked", "passcode"]),
        VALUES, max_size=6)),
    st.builds(lambda kind, value: json.dumps({"type": kind, "room": "r", "name": value, "text": value,
                                               "passcode": value}),
              st.sampled_from(["join", "rename", "chat", "passcode"]), NASTY),
    # bytes: sent as a binary frame, or as a text frame when not valid UTF-8
    st.binary(max_size=60) | st.sampled_from([b"\xff\xfe", b"{\"type\": \"ping\"}\xc3", b"\xed\xa0\x80"]),
)


class LiveFuzzTest(ServerCase):
    """Random frames at a live server: no crash, no effect on another room.

    The suite's log check fails these on any traceback the server logs; with
    MESHCALL_TEST_CRASH_HANDLER=1 a handler crashes on purpose, to show that it does
    (tests/test_logcheck.py)."""

    def get_app(self) -> Any:
        if os.environ.get("MESHCALL_TEST_CRASH_HANDLER") == "1":
            def crash(handler: SignalingHandler, msg: dict[str, Any]) -> None:
                raise RuntimeError("deliberate crash in a signaling handler")
            patcher = mock.patch.object(SignalingHandler, "do_ping", crash)
            patcher.start()
            self.addCleanup(patcher.stop)
        return super().get_app()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(FRAMES, min_size=1, max_size=8))
    def test_random_frames_never_break_the_server(self, frames: list[str]) -> None:
        async def run() -> None:
            bystander = await self.client()
            wb = await bystander.join(room="quiet")
            fuzz = await self.client()
            for frame in frames:
                try:
                    if isinstance(frame, bytes):
                        await fuzz.conn.write_message(frame, binary=len(frame) % 2 == 0)
                    else:
                        await fuzz.send(frame)
                except websocket.WebSocketClosedError:
                    break
            fuzz.conn.close()
            await bystander.alive()
            # Nothing a stranger sent reached the other room.
            assert [p.id for p in self.rooms.members("quiet")] == [wb["id"]]
            bystander.conn.close(1000)
            await eventually(lambda: not self.rooms.members("quiet"))  # the next example starts clean

        self.io_loop.run_sync(run, timeout=20)


class VanishedTest(ServerCase):
    """A page that gives up its socket itself (close code 4000) keeps its place for the
    whole grace; a socket that ends without a close frame (the browser is gone) only for
    the shorter hold."""

    grace = 3.0

    def get_app(self) -> Any:
        app = super().get_app()
        self.hub.vanished_hold = 0.5
        return app

    @gen_test(timeout=15)
    async def test_a_socket_ending_without_a_close_frame_is_dropped_after_the_short_hold(self) -> None:
        a, b = await self.client(), await self.client()
        await a.join()
        wb = await b.join()
        await a.expect("peer-joined")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        b.conn.protocol.stream.close()
        left = await a.expect("peer-left")
        assert left["id"] == wb["id"] and loop.time() - t0 < self.grace - 1

    @gen_test(timeout=15)
    async def test_a_page_that_gives_up_its_socket_keeps_its_place_for_the_grace(self) -> None:
        a, b = await self.client(), await self.client()
        await a.join()
        wb = await b.join()
        await a.expect("peer-joined")
        b.conn.close(4000, "connection lost")
        await asyncio.sleep(1.5)  # three times the short hold
        assert self.rooms.get(wb["id"]) is not None
        b2 = await self.client()
        again = await b2.join(resume=wb["token"])
        assert again["resumed"] is True and again["id"] == wb["id"]
        assert (await a.expect("peer-updated"))["peer"]["id"] == wb["id"]

    @gen_test
    async def test_what_the_other_kernel_acknowledged_can_be_read_from_a_live_socket(self) -> None:
        from meshcall.signaling import unacked

        a = await self.client()
        wa = await a.join()
        await eventually(lambda: unacked(self.hub.sockets[wa["id"]]) == 0)
