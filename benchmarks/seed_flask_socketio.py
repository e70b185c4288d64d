"""The seed's stack, as a reference: a minimal Flask-SocketIO relay. Never shipped.

What a typical first version of this appliance would be: Flask + Flask-SocketIO in its
default async mode, which (without eventlet/gevent installed) is `threading`, with
`simple-websocket` giving real WebSocket transport, served by Werkzeug's threaded server
over TLS (one thread per connection). Same semantics as meshcall's /ws: `join` answers
`welcome` with the peer list and tells the room `peer-joined`; `signal` is relayed to
`to` with `from` stamped by the server; disconnect tells the room `peer-left`.

    python benchmarks/seed_flask_socketio.py --port P [--cert C --key K]
"""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any

from flask import Flask, request
from flask_socketio import SocketIO, emit, join_room, leave_room

app = Flask(__name__)
socketio = SocketIO(app, cors_allowed_origins=[], logger=False, engineio_logger=False)
lock = threading.Lock()
rooms: dict[str, dict[str, dict[str, Any]]] = {}
room_of: dict[str, str] = {}


@app.get("/healthz")
def healthz() -> dict[str, Any]:
    return {"status": "ok", "async_mode": socketio.async_mode}


@socketio.on("join")
def on_join(data: dict[str, Any]) -> None:
    sid = request.sid  # type: ignore[attr-defined]
    room = str(data["room"])
    peer = {"id": sid, "name": str(data.get("name", "")), "audio": True, "video": True}
    with lock:
        members = rooms.setdefault(room, {})
        others = list(members.values())
        members[sid] = peer
        room_of[sid] = room
    emit("welcome", {"id": sid, "room": room, "peers": others})
    emit("peer-joined", {"peer": peer}, to=room)
    join_room(room)


@socketio.on("signal")
def on_signal(data: dict[str, Any]) -> None:
    sid = request.sid  # type: ignore[attr-defined]
    to = data.pop("to", None)
    with lock:
        ok = to in room_of and room_of.get(to) == room_of.get(sid)
    if ok:
        data["from"] = sid
        emit("signal", data, to=to)


def _leave(sid: str) -> None:
    with lock:
        room = room_of.pop(sid, None)
        if room is None:
            return
        members = rooms.get(room, {})
        members.pop(sid, None)
        if not members:
            rooms.pop(room, None)
    leave_room(room)
    emit("peer-left", {"id": sid}, to=room)


@socketio.on("leave")
def on_leave(data: Any = None) -> None:
    _leave(request.sid)  # type: ignore[attr-defined]


@socketio.on("disconnect")
def on_disconnect(*args: Any) -> None:
    _leave(request.sid)  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    ssl_context = (args.cert, args.key) if args.cert else None
    socketio.run(app, host="127.0.0.1", port=args.port, ssl_context=ssl_context,
                 allow_unsafe_werkzeug=True, log_output=False)


if __name__ == "__main__":
    main()
