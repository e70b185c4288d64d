"""The appliance-wide access code over real sockets: what a browser without the cookie
gets, how the code sets it, and the WebSocket refusing sockets without it."""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, strategies as st
from tornado import httpclient, websocket
from tornado.testing import gen_test

from meshcall import access
from meshcall.access import COOKIE_NAME, AccessGate, Verdict
from meshcall.paths import asset_dir
from meshcall.rooms import Rooms
from meshcall.signaling import Hub
from meshcall.web import SECURITY_HEADERS, AppContext, make_app
from test_signaling import Client, ServerCase

CODE = "guest-wifi-7341"
SECRET = b"s" * 32


def test_the_cookie_admits_only_for_its_code_key_and_lifetime() -> None:
    gate = AccessGate(CODE, SECRET)
    now = 1_800_000_000.0
    value = gate.cookie(now)
    assert CODE not in value and gate.admits(value, now) and gate.admits(value, now + access.COOKIE_MAX_AGE)
    assert not gate.admits(value, now + access.COOKIE_MAX_AGE + 1)
    assert not gate.admits(value, now - access.FUTURE_SLACK - 1)
    assert not AccessGate("another code", SECRET).admits(value, now)  # a new code voids old cookies
    assert not AccessGate(CODE, b"t" * 32).admits(value, now)  # another appliance's cookie
    issued, mac = value.split(".")
    assert not gate.admits(f"{int(issued) + 1}.{mac}", now)  # a stretched lifetime
    assert not gate.admits(f"{issued}.{mac[:-1]}0" if mac[-1] != "0" else f"{issued}.{mac[:-1]}1", now)
    for bad in (None, "", ".", issued, f"{issued}.", f"-1.{mac}", f"１.{mac}", "x" * 500):
        assert not gate.admits(bad, now), bad
    with pytest.raises(ValueError):
        AccessGate("  ", SECRET)


def test_wrong_codes_are_limited_per_address_and_then_even_the_right_one_waits() -> None:
    gate = AccessGate(CODE, SECRET)
    for _ in range(access.TRIES_BURST):
        assert gate.check("nope", "10.0.0.5", 100.0) is Verdict.WRONG
    assert gate.check(CODE, "10.0.0.5", 100.0) is Verdict.TOO_MANY
    assert gate.check(CODE, "10.0.0.6", 100.0) is Verdict.OK  # another address is not held up
    assert gate.check(CODE, "10.0.0.5", 100.0 + 1 / access.TRIES_PER_SECOND) is Verdict.OK
    # Right codes do not use up tries.
    for _ in range(3 * access.TRIES_BURST):
        assert gate.check(CODE, "10.0.0.7", 200.0) is Verdict.OK


@given(st.text(max_size=300))
def test_any_cookie_value_is_refused_without_an_error(value: str) -> None:
    assert AccessGate(CODE, SECRET).admits(value, time.time()) is False


@given(st.text(max_size=600))
def test_any_guess_but_the_code_is_wrong(guess: str) -> None:
    if guess != CODE:
        assert AccessGate(CODE, SECRET).check(guess, "a", 0.0) is Verdict.WRONG


class AccessTest(ServerCase):
    def get_app(self) -> Any:
        self.rooms = Rooms(self.max_peers, self.grace)
        self.issued = 0
        self.hub = Hub(self.rooms, self._ice, ping_after=0.2)
        self.hub.start()
        self.clients: list[Client] = []
        self.gate = AccessGate(CODE, SECRET)
        return make_app(AppContext(self.hub, asset_dir(), access=self.gate))

    async def get(self, path: str, cookie: str | None = None, **kw: Any) -> httpclient.HTTPResponse:
        headers = {"Cookie": f"{COOKIE_NAME}={cookie}"} if cookie else {}
        return await self.http_client.fetch(self.get_url(path), headers=headers, raise_error=False,
                                            follow_redirects=False, **kw)

    async def give(self, code: str) -> httpclient.HTTPResponse:
        return await self.get("/access", method="POST", body=urlencode({"code": code}))

    async def ws(self, cookie: str | None = None) -> Client:
        headers = {"Cookie": f"{COOKIE_NAME}={cookie}"} if cookie else {}
        req = httpclient.HTTPRequest(self.get_url("/ws").replace("http", "ws"), headers=headers)
        client = Client(await websocket.websocket_connect(req))
        self.clients.append(client)
        return client

    @gen_test
    async def test_without_the_cookie_only_the_code_page_and_its_assets_are_served(self) -> None:
        for path in ("/", "/r/team", "/r/team?display=1", "/qr.svg", "/static/js/room.js", "/nowhere"):
            res = await self.get(path)
            assert res.code == 403, path
            if path.startswith(("/static/", "/qr.svg")):
                assert b"room.js" not in res.body and b"<svg" not in res.body, path  # refused, not served
            else:
                assert b'id="access-code"' in res.body, path  # a page: the one asking for the code
            for name, value in SECURITY_HEADERS.items():
                assert res.headers[name] == value, (path, name)
        page = await self.get("/r/team")
        assert b'id="access-code"' in page.body and b"room.js" not in page.body
        for path in ("/static/app.css", "/static/js/access.js", "/healthz"):
            assert (await self.get(path)).code == 200, path
        assert (await self.get("/access")).code == 403
        assert (await self.get("/", method="POST", body="x")).code == 403

    @gen_test
    async def test_the_websocket_is_refused_before_the_upgrade_without_a_valid_cookie(self) -> None:
        for cookie in (None, "garbage", f"{int(time.time())}.{'0' * 64}",
                       AccessGate("old code", SECRET).cookie(time.time())):
            with pytest.raises(httpclient.HTTPClientError) as err:
                await self.ws(cookie)
            assert err.value.code == 403, cookie
        assert self.hub.open_sockets == set()

    @gen_test
    async def test_the_right_code_sets_a_signed_strict_cookie_that_admits(self) -> None:
        wrong = await self.give("guess")
        assert wrong.code == 403 and b'"bad-access-code"' in wrong.body and "Set-Cookie" not in wrong.headers
        res = await self.give(CODE)
        assert res.code == 204
        set_cookie = res.headers["Set-Cookie"]
        attrs = {a.strip().split("=")[0].lower() for a in set_cookie.split(";")}
        assert {"httponly", "secure", "samesite", "path", "max-age"} <= attrs, set_cookie
        assert "SameSite=Strict" in set_cookie and CODE not in set_cookie
        value = set_cookie.split(";")[0].split("=", 1)[1]
        assert self.gate.admits(value, time.time())
        assert (await self.get("/access", cookie=value)).code == 204
        page = await self.get("/r/team", cookie=value)
        assert page.code == 200 and b"room.js" in page.body
        assert (await self.get("/static/js/room.js", cookie=value)).code == 200
        client = await self.ws(value)
        assert (await client.join())["roomState"]["locked"] is False

    @gen_test
    async def test_wrong_codes_are_rate_limited_per_address(self) -> None:
        for _ in range(access.TRIES_BURST):
            assert (await self.give("guess")).code == 403
        res = await self.give(CODE)
        assert res.code == 429 and b'"too-many-tries"' in res.body and "Set-Cookie" not in res.headers

    @gen_test
    async def test_the_code_is_never_logged(self) -> None:
        with self.assertLogs(level=logging.DEBUG) as logs:
            logging.getLogger("meshcall").debug("start")
            await self.give(CODE + "x")
            await self.give(CODE)
            await self.get("/r/room")
        text = "\n".join(logs.output)
        assert CODE not in text and "bad-access-code" in text


class OpenApplianceTest(ServerCase):
    @gen_test
    async def test_without_an_access_code_nothing_is_gated(self) -> None:
        res = await self.http_client.fetch(self.get_url("/access"), raise_error=False)
        assert res.code == 204
        posted = await self.http_client.fetch(self.get_url("/access"), method="POST", body="code=x",
                                              raise_error=False)
        assert posted.code == 404
        client = await self.client()
        await client.join()


def test_the_real_appliance_with_an_access_code_refuses_then_admits(tmp_path: Any) -> None:
    """`python -m meshcall --access-code`: the cookie survives a restart (the signing
    secret is kept in the data dir), and the code never reaches the log."""
    import asyncio
    import json
    import urllib.error
    import urllib.request

    from helpers.procs import Meshcall, insecure_context

    ctx = insecure_context()

    def fetch(url: str, data: bytes | None = None, cookie: str | None = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(url, data=data, headers={"Cookie": f"{COOKIE_NAME}={cookie}"} if cookie else {})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=5) as res:
                return res.status, dict(res.headers), res.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    async def websocket_status(port: int, cookie: str | None) -> int:
        headers = {"Cookie": f"{COOKIE_NAME}={cookie}"} if cookie else {}
        req = httpclient.HTTPRequest(f"wss://127.0.0.1:{port}/ws", validate_cert=False, headers=headers)
        try:
            conn = await websocket.websocket_connect(req)
        except httpclient.HTTPClientError as err:
            return err.code
        await conn.write_message(json.dumps({"type": "join", "room": "r", "name": "n"}))
        kind = json.loads(await asyncio.wait_for(conn.read_message(), 5))["type"]
        conn.close()
        return 101 if kind == "welcome" else 0

    data = tmp_path / "data"
    with Meshcall(["--access-code", CODE], data_dir=data) as mc:
        status, _, body = fetch(mc.url + "/r/room")
        assert status == 403 and b'id="access-code"' in body
        assert asyncio.run(websocket_status(mc.port, None)) == 403
        status, headers, _ = fetch(mc.url + "/access", urlencode({"code": CODE}).encode())
        assert status == 204
        cookie = headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
        assert asyncio.run(websocket_status(mc.port, cookie)) == 101
        mc.wait_for("access code: required")
        assert CODE not in mc.output()
    with Meshcall(data_dir=data, env={"MESHCALL_ACCESS_CODE": CODE}) as mc:
        assert fetch(mc.url + "/r/room", cookie=cookie)[0] == 200
        assert fetch(mc.url + "/r/room")[0] == 403
