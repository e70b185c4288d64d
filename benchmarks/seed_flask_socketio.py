"""The seed's stack, as a reference: a minimal Flask-SocketIO relay. Never shipped.

The seed deploys Flask + Flask-SocketIO under gunicorn with gevent-websocket's worker,
one worker, over TLS (its systemd unit, Procfile and Dockerfile all run that command).
The bench runs exactly that:

    gunicorn --worker-class geventwebsocket.gunicorn.workers.GeventWebSocketWorker \
        --workers 1 --bind 127.0.0.1:P --certfile C --keyfile K \
        --pythonpath benchmarks 'seed_flask_socketio:create_app("gevent")'

and, on request, the weaker variant a plain `pip install flask-socketio` gets: `threading`
mode with simple-websocket on Werkzeug's threaded server (one thread per connection):

    python benchmarks/seed_flask_socketio.py --port P [--cert C --key K]

The async mode is always pinned: with gevent installed, Flask-SocketIO's automatic choice
would silently turn the threading variant into a gevent one (and the other way round).

Same semantics as meshcall's /ws: `join` answers `welcome` with the peer list and tells
the room `peer-joined`; `signal` is relayed to `to` with `from` stamped by the server;
disconnect tells the room `peer-left`."""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any

from flask import Flask, request
from flask_socketio import SocketIO, emit, join_room, leave_room

app = Flask(__name__)
# Handlers are registered now; the async mode is chosen in create_app().
socketio = SocketIO(cors_allowed_origins=[], logger=False, engineio_logger=False)
lock = threading.Lock()  # a gevent lock once gunicorn's worker has monkey-patched threading
rooms: dict[str, dict[str, dict[str, Any]]] = {}
room_of: dict[str, str] = {}
# How the WebSocket connections arrived: "gevent-websocket" when the worker's handler
# upgraded them (the production path), "simple-websocket" otherwise. Shown by /healthz
# so the bench can tell which transport it measured.
transports: dict[str, int] = {}


@app.get("/healthz")
def healthz() -> dict[str, Any]:
    return {"status": "ok", "async_mode": socketio.async_mode, "websocket_transports": dict(transports)}


@socketio.on("connect")
def on_connect(*args: Any) -> None:
    kind = "gevent-websocket" if request.environ.get("wsgi.websocket") is not None else "simple-websocket"
    with lock:
        transports[kind] = transports.get(kind, 0) + 1


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


def create_app(async_mode: str) -> Flask:
    """The WSGI app with Flask-SocketIO in `async_mode` ("gevent" under gunicorn's
    gevent-websocket worker, "threading" on Werkzeug)."""
    socketio.init_app(app, async_mode=async_mode, cors_allowed_origins=[], logger=False, engineio_logger=False)
    if socketio.async_mode != async_mode:  # never measure a stack other than the one named
        raise RuntimeError(f"Flask-SocketIO chose {socketio.async_mode!r}, not {async_mode!r}")
    return app


def main() -> None:
    """The threading variant on Werkzeug's threaded server."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    create_app("threading")
    ssl_context = (args.cert, args.key) if args.cert else None
    socketio.run(app, host="127.0.0.1", port=args.port, ssl_context=ssl_context,
                 allow_unsafe_werkzeug=True, log_output=False)


if __name__ == "__main__":
    main()
