"""Meeting features over real sockets: chat, raise hand, room lock and passcodes."""

from __future__ import annotations

import logging
import time

from tornado.testing import gen_test

from meshcall import rooms
from test_signaling import ServerCase


class MeetingTest(ServerCase):
    max_peers = 4

    @gen_test
    async def test_chat_is_stamped_sent_to_everyone_and_kept_for_newcomers(self) -> None:
        a, b = await self.client(), await self.client()
        wa = await a.join(name="Ada")
        await b.join(name="Bob")
        await a.expect("peer-joined")
        before = int(time.time() * 1000)
        await a.send({"type": "chat", "text": "  <img src=x onerror=alert(1)>\u0007 hi\n  "})
        for c in (a, b):
            msg = await c.expect("chat")
            assert msg["from"] == wa["id"] and msg["name"] == "Ada" and msg["id"] == 1
            assert msg["text"] == "<img src=x onerror=alert(1)> hi"  # text, cleaned; the page shows it as text
            assert before <= msg["ts"] <= int(time.time() * 1000)
        late = await self.client()
        await late.join()
        history = await late.expect("chat-history")
        assert [m["text"] for m in history["messages"]] == ["<img src=x onerror=alert(1)> hi"]

    @gen_test
    async def test_chat_errors_have_their_codes_and_change_nothing(self) -> None:
        a = await self.client()
        await a.join()
        for text, code in (("   ", "chat-empty"), ("\u200b", "chat-empty"), ("x" * 2001, "chat-too-long"),
                           ("x" * 9000, "chat-too-long")):
            await a.send({"type": "chat", "text": text})
            err = await a.expect("error")
            assert (err["error"], err["fatal"]) == (code, False), text
        for i in range(rooms.CHAT_BURST):
            await a.send({"type": "chat", "text": f"m{i}"})
            await a.expect("chat")
        await a.send({"type": "chat", "text": "one more"})
        assert (await a.expect("error"))["error"] == "chat-too-fast"
        assert [m["text"] for m in self.rooms.chat_history(self.rooms.members("r")[0].id)] == \
            [f"m{i}" for i in range(rooms.CHAT_BURST)]
        await a.alive()

    @gen_test
    async def test_chat_is_forgotten_when_the_room_empties(self) -> None:
        a = await self.client()
        await a.join()
        await a.send({"type": "chat", "text": "secret plans"})
        await a.expect("chat")
        await a.send({"type": "leave"})
        await a.closed()
        b = await self.client()
        await b.join()
        await b.alive()  # the next frame after the welcome is the pong: no history
        assert self.rooms.chat_history(self.rooms.members("r")[0].id) == []

    @gen_test
    async def test_hands_are_ordered_and_seen_by_everyone(self) -> None:
        a, b = await self.client(), await self.client()
        wa = await a.join()
        wb = await b.join()
        await a.expect("peer-joined")
        await b.send({"type": "hand", "raised": True})
        for c in (a, b):
            assert (await c.expect("peer-updated"))["peer"] == {**(await self._peer(wb["id"])), "hand": 1}
        await a.send({"type": "hand", "raised": True})
        assert (await b.expect("peer-updated"))["peer"]["hand"] == 2
        await a.expect("peer-updated")
        await b.send({"type": "hand", "raised": False})
        assert (await a.expect("peer-updated"))["peer"]["hand"] is None
        late = await self.client()
        peers = {p["id"]: p["hand"] for p in (await late.join())["peers"]}
        assert peers == {wa["id"]: 2, wb["id"]: None}

    async def _peer(self, peer_id: str) -> dict:
        peer = self.rooms.get(peer_id)
        assert peer is not None
        return peer.public()

    @gen_test
    async def test_a_locked_room_turns_newcomers_away_and_members_see_who_locked_it(self) -> None:
        a, b = await self.client(), await self.client()
        await a.join(name="Ada")
        await b.join(name="Bob")
        await a.expect("peer-joined")
        await a.send({"type": "lock", "locked": True})
        for c in (a, b):
            upd = await c.expect("room-updated")
            assert upd["roomState"] == {"locked": True, "lockedBy": "Ada", "passcode": False} and upd["by"] == "Ada"
        late = await self.client()
        await late.send({"type": "join", "room": "R", "name": "Late"})
        err = await late.expect("error")
        assert (err["error"], err["fatal"], err["lockedBy"]) == ("room-locked", False, "Ada")
        assert len(self.rooms.members("r")) == 2
        await b.send({"type": "lock", "locked": False})
        assert (await a.expect("room-updated"))["roomState"]["locked"] is False
        assert (await late.join())["roomState"] == {"locked": False, "lockedBy": None, "passcode": False}

    @gen_test
    async def test_a_resume_is_not_refused_by_a_lock(self) -> None:
        a, b = await self.client(), await self.client()
        await a.join()
        wb = await b.join()
        await a.send({"type": "lock", "locked": True})
        b.conn.protocol.stream.close()
        b2 = await self.client()
        again = await b2.join(resume=wb["token"])
        assert again["resumed"] and again["roomState"]["locked"]

    @gen_test
    async def test_passcodes_admit_refuse_and_are_never_shown(self) -> None:
        with self.assertLogs("meshcall", logging.DEBUG) as logs:
            a, b = await self.client(), await self.client()
            await a.join(name="Ada")
            await b.join(name="Bob")
            await a.expect("peer-joined")
            await a.send({"type": "passcode", "passcode": "tulip-4711"})
            for c in (a, b):
                upd = await c.expect("room-updated")
                assert upd["roomState"]["passcode"] is True and "tulip" not in str(upd)
            c = await self.client()
            await c.send({"type": "join", "room": "r", "name": "C"})
            assert (await c.expect("error"))["error"] == "passcode-required"
            await c.send({"type": "join", "room": "r", "name": "C", "passcode": "tulip-4712"})
            assert (await c.expect("error"))["error"] == "bad-passcode"
            welcome = await c.join(name="C", passcode="tulip-4711")
            assert welcome["roomState"]["passcode"] is True
            joined = await a.expect("peer-joined")
            await b.expect("peer-joined")
            assert "tulip" not in str(joined) and "tulip" not in str(welcome)
            await a.send({"type": "passcode", "passcode": "   "})
            assert (await a.expect("error"))["error"] == "bad-passcode"
            await a.send({"type": "passcode", "passcode": None})
            assert (await b.expect("room-updated"))["roomState"]["passcode"] is False
        assert all("tulip" not in line for line in logs.output)

    @gen_test
    async def test_wrong_passcodes_are_limited_per_address_and_then_not_even_checked(self) -> None:
        a = await self.client()
        await a.join()
        await a.send({"type": "passcode", "passcode": "right"})
        await a.expect("room-updated")
        guesser = await self.client()
        for i in range(rooms.PASSCODE_TRIES_BURST):
            await guesser.send({"type": "join", "room": "r", "name": "g", "passcode": f"wrong{i}"})
            assert (await guesser.expect("error"))["error"] == "bad-passcode"
        await guesser.send({"type": "join", "room": "r", "name": "g", "passcode": "right"})
        assert (await guesser.expect("error"))["error"] == "too-many-tries"
        assert len(self.rooms.members("r")) == 1
