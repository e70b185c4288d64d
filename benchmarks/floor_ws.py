"""The floor: the least a WebSocket relay with meshcall's join/signal semantics can do.

A bench reference, never shipped. One asyncio loop, the `websockets` package (its asyncio
server), the same TLS chain as meshcall, the same frames: `join` gets a `welcome` with the
peer list and the others a `peer-joined`; `signal` is relayed to `to` with `from` stamped;
`leave`/close sends `peer-left`. No validation, no limits, no heartbeat, no logging.

    python benchmarks/floor_ws.py --port P [--cert C --key K]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import ssl
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response


class Relay:
    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.socks: dict[str, ServerConnection] = {}
        self.room_of: dict[str, str] = {}
        self.rooms: dict[str, dict[str, dict[str, Any]]] = {}

    def send(self, peer_id: str, text: str) -> None:
        ws = self.socks.get(peer_id)
        if ws is not None:
            asyncio.ensure_future(ws.send(text))

    def leave(self, peer_id: str) -> None:
        room = self.room_of.pop(peer_id, None)
        self.socks.pop(peer_id, None)
        if room is None:
            return
        members = self.rooms[room]
        members.pop(peer_id, None)
        if not members:
            del self.rooms[room]
        text = json.dumps({"type": "peer-left", "id": peer_id}, separators=(",", ":"))
        for other in members:
            self.send(other, text)

    async def handler(self, ws: ServerConnection) -> None:
        me: str | None = None
        try:
            async for frame in ws:
                msg = json.loads(frame)
                kind = msg.get("type")
                if kind == "signal" and me is not None:
                    to = msg.pop("to")
                    msg["from"] = me
                    if to in self.room_of and self.room_of[to] == self.room_of[me]:
                        self.send(to, json.dumps(msg, separators=(",", ":")))
                elif kind == "join" and me is None:
                    me = f"p{next(self.ids):06x}"
                    room = msg["room"]
                    peer = {"id": me, "name": msg.get("name", ""), "audio": True, "video": True}
                    members = self.rooms.setdefault(room, {})
                    welcome = {"type": "welcome", "id": me, "token": "-", "room": room,
                               "peers": list(members.values())}
                    self.socks[me], self.room_of[me] = ws, room
                    await ws.send(json.dumps(welcome, separators=(",", ":")))
                    text = json.dumps({"type": "peer-joined", "peer": peer}, separators=(",", ":"))
                    for other in members:
                        self.send(other, text)
                    members[me] = peer
                elif kind == "ping":
                    await ws.send('{"type":"pong"}')
                elif kind == "leave" and me is not None:
                    self.leave(me)
                    me = None
        except Exception:  # the floor has no error taxonomy: any bad frame ends the socket
            pass
        finally:
            if me is not None:
                self.leave(me)


def health(conn: ServerConnection, request: Request) -> Response | None:
    if request.path == "/healthz":
        return Response(200, "OK", Headers({"Content-Type": "application/json"}), b'{"status":"ok"}')
    return None


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()
    ctx = None
    if args.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
    relay = Relay()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with serve(relay.handler, "127.0.0.1", args.port, ssl=ctx, process_request=health,
                     compression=None, ping_interval=None, max_size=256 * 1024):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
