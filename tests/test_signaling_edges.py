"""What a stranger on the LAN can send to the signaling socket: each case on real sockets,
each answered with its documented code, and none may crash a handler or grow memory."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from unittest import mock

from tornado import websocket
from tornado.testing import gen_test

from meshcall import protocol, signaling
from meshcall.buckets import Buckets
from test_signaling import TIMEOUT, ServerCase, eventually


def _frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 §5.2), written by hand to send what a normal
    client library refuses to."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawClient:
    """A WebSocket client on a plain socket that reads only when asked to."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        return data

    def send(self, msg: dict) -> None:
        self.sock.sendall(_frame(0x1, json.dumps(msg).encode()))

    def read_frame(self) -> tuple[int, bytes]:
        while len(self.buf) < 2:
            self.buf += self._recv()
        opcode, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
        start = 2
        if n == 126:
            while len(self.buf) < 4:
                self.buf += self._recv()
            n, start = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            while len(self.buf) < 10:
                self.buf += self._recv()
            n, start = struct.unpack("!Q", self.buf[2:10])[0], 10
        while len(self.buf) < start + n:
            self.buf += self._recv()
        payload, self.buf = self.buf[start:start + n], self.buf[start + n:]
        return opcode, payload

    def close(self) -> None:
        self.sock.close()


class EdgeTest(ServerCase):
    def _offer(self, to: str, size: int) -> dict:
        return {"type": "signal", "to": to, "description": {"type": "offer", "sdp": "v=0\r\n" + "a" * size}}

    @gen_test
    async def test_a_lone_surrogate_name_is_cleaned_and_the_room_stays_joinable(self) -> None:
        with self.assertNoLogs("tornado.application", "ERROR"):
            a = await self.client()
            await a.send('{"type": "join", "room": "r", "name": "\\ud800evil"}')
            wa = await a.expect("welcome")
            b = await self.client()
            wb = await b.join(name="\\udfff")  # the JSON escape of a lone low surrogate, as text
            assert wb["peers"] == [{"id": wa["id"], "name": "evil", "audio": True, "video": True, "screen": None,
                                   "hand": None}]
            assert (await a.expect("peer-joined"))["peer"]["id"] == wb["id"]
            await a.send('{"type": "rename", "name": "\\ud800"}')
            err = await a.expect("error")
            assert (err["error"], err["fatal"]) == ("bad-name", False)
            await a.send('{"type": "rename", "name": "ok\\udbff\\ufffe"}')
            assert (await b.expect("peer-updated"))["peer"]["name"] == "ok"
            c = await self.client()
            assert len((await c.join())["peers"]) == 2

    @gen_test
    async def test_a_lone_surrogate_in_a_relayed_field_is_refused_not_sent(self) -> None:
        with self.assertNoLogs("tornado.application", "ERROR"):
            a, b = await self.client(), await self.client()
            await a.join()
            wb = await b.join()
            await a.expect("peer-joined")
            await a.send('{"type": "signal", "to": "%s", "description": {"type": "offer", "sdp": "v=0\\udc00"}}'
                         % wb["id"])
            err = await a.expect("error")
            assert (err["error"], err["fatal"]) == ("bad-field", True)
            assert await a.closed() == 4400
            await b.alive()

    @gen_test
    async def test_the_frame_limit_counts_bytes_not_characters(self) -> None:
        b = await self.client()
        wb = await b.join()
        a = await self.client()
        await a.join()
        # 'é' is two bytes: a frame of ~40,000 characters is over 64 KiB on the wire.
        msg = {"type": "signal", "to": wb["id"], "candidate": {"candidate": "c"}, "pad": "é" * 33_000}
        text = json.dumps(msg, ensure_ascii=False)
        assert len(text) < protocol.MAX_FRAME < len(text.encode())
        await a.send(text)
        err = await a.expect("error")
        assert err["error"] == "too-large"
        assert await a.closed() == 4413

    @gen_test
    async def test_binary_frames_are_refused_with_1003(self) -> None:
        c = await self.client()
        await c.join()
        await c.conn.write_message(b'{"type": "ping"}', binary=True)
        err = await c.expect("error")
        assert (err["error"], err["fatal"]) == ("binary-frame", True)
        assert await c.closed() == 1003

    @gen_test
    async def test_invalid_utf8_is_answered_with_1007(self) -> None:
        c = await self.client()
        await c.join()
        await c.conn.write_message(b'{"type": "ping", "x": "\xff\xfe"}', binary=False)
        err = await c.expect("error")
        assert err["error"] == "bad-utf8"
        assert await c.closed() == 1007

    @gen_test
    async def test_an_oversized_frame_gets_1009_not_a_reset(self) -> None:
        for _ in range(5):  # a reset came often, not always: try a few times
            c = await self.client()
            await c.send(json.dumps({"type": "ping", "pad": "x" * 2_000_000}))
            assert await c.closed() == 1009

    @gen_test
    async def test_a_room_name_with_a_trailing_newline_is_refused(self) -> None:
        c = await self.client()
        await c.send({"type": "join", "room": "abc\n", "name": "n"})
        assert (await c.expect("error"))["error"] == "bad-room"
        assert self.rooms.room_count == 0
        resp = await self.http_client.fetch(self.get_url("/r/abc%0A"), raise_error=False)
        assert resp.code == 404

    @gen_test
    async def test_websocket_pings_count_against_the_rate_limit(self) -> None:
        c = await self.client()
        await c.join()
        # All written at once, without yielding: the server (on this same loop) then reads
        # them back to back, so the bucket cannot refill between them however busy the
        # machine is (with a yield per ping, a slow loop refilled it faster than it drained).
        for _ in range(int(signaling.RATE_BURST) + 400):
            try:
                c.conn.ping(b"x")
            except websocket.WebSocketClosedError:
                break
        err = await c.expect("error")
        assert err["error"] == "rate-limited"
        assert await c.closed() == 4429

    @gen_test
    async def test_one_address_cannot_open_rooms_without_end(self) -> None:
        self.rooms.new_rooms = Buckets(5, 1.0)
        keeper = await self.client()
        await keeper.join(room="room-kept")
        c = await self.client()
        for i in range(4):
            await c.join(room=f"room{i}")
            await c.send({"type": "leave"})
            assert await c.closed() == 1000
            c = await self.client()
        await c.send({"type": "join", "room": "one-too-many", "name": "n"})
        err = await c.expect("error")
        assert (err["error"], err["fatal"]) == ("too-many-rooms", False)
        assert self.rooms.room_count == 1
        await c.join(room="room-kept")  # refused rooms change nothing; joining one is not limited

    @gen_test(timeout=60)
    async def test_a_peer_that_does_not_read_is_cut_off_and_memory_stays_bounded(self) -> None:
        self.hub.max_backlog = 256 * 1024
        senders = [await self.client(), await self.client()]
        for s in senders:
            await s.join()
        stalled = await asyncio.get_running_loop().run_in_executor(None, RawClient, self.get_http_port(), 4096)
        self.addCleanup(stalled.close)
        stalled.send({"type": "join", "room": "r", "name": "never reads"})
        opcode, payload = await asyncio.get_running_loop().run_in_executor(None, stalled.read_frame)
        stalled_id = json.loads(payload)["id"]
        sock = self.hub.sockets[stalled_id]
        conn = sock.ws_connection
        assert conn is not None
        # The stalled client never reads, so it never sees the close frame: watch the
        # server close it instead.
        closes = mock.patch.object(sock, "close", wraps=sock.close)
        spy = closes.start()
        self.addCleanup(closes.stop)
        deadline = asyncio.get_running_loop().time() + 30
        most = sent = 0
        while not conn.is_closing() and sent < 600:
            assert asyncio.get_running_loop().time() < deadline, "the stalled peer was never cut off"
            await senders[sent % 2].send(self._offer(stalled_id, 30_000))
            sent += 1
            await asyncio.sleep(0.005)
            most = max(most, signaling.backlog(conn))
        assert conn.is_closing(), f"still open after {sent} offers"
        assert most <= self.hub.max_backlog + 31_000
        spy.assert_any_call(4408, "too-slow")
        # The others never noticed: their sockets work, and the stalled peer keeps its
        # place for the grace period like any lost connection.
        for s in senders:
            await s.send({"type": "ping"})
            while (await s.recv() or {}).get("type") != "pong":
                pass
        stalled.close()
        await eventually(lambda: stalled_id not in self.hub.sockets, TIMEOUT)
        assert stalled_id in {p.id for p in self.rooms.members("r")}


class JoinDeadlineTest(ServerCase):
    def get_app(self) -> object:
        app = super().get_app()
        self.hub.join_deadline = 0.5
        return app

    @gen_test
    async def test_a_socket_that_only_pings_and_never_joins_is_closed(self) -> None:
        idle, member = await self.client(), await self.client()
        await member.join()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while True:
            assert loop.time() < deadline, "the unjoined socket was never closed"
            try:
                await idle.send({"type": "ping"})
            except websocket.WebSocketClosedError:
                break
            if await idle.recv() is None:  # each ping is answered until the close
                break
            await asyncio.sleep(0.05)  # well under the rate limit
        assert idle.conn.close_code == 1000 and idle.conn.close_reason == "join timed out"
        await member.alive()  # a joined socket is not held to it
