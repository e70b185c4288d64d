"""Signaling frames: parse what clients send and build what the server sends (pure, no I/O).

Every check here maps to a stable error code written in docs/protocol.md. Every limit
counts UTF-8 bytes, as the wire does; every string that may be relayed is checked to be
encodable, so no input can make a later send fail."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, Callable

from .errors import ProtocolError, UserError

MAX_FRAME = 64 * 1024
MAX_NAME = 40
MAX_SDP = 32 * 1024
MAX_CANDIDATE = 1024
MAX_TOKEN = 64
MAX_MID = 32
MAX_UFRAG = 256
# Checked with fullmatch: '$' would also match before a final newline.
ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")
PEER_ID_RE = re.compile(r"p[0-9a-f]{6,16}")
CONN_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A MediaStream id as browsers make them (a UUID, sometimes in braces).
STREAM_RE = re.compile(r"[A-Za-z0-9_{}-]{1,64}")
MAX_CHAT = 2000

CLIENT_TYPES = ("join", "signal", "media", "rename", "ping", "leave", "hand", "chat", "lock", "passcode")
# The fields of each client message and their defaults, as docs/protocol.md lists them
# (a test holds the two together). "required" has no default; "one of" is a field of
# which exactly one of its group must be present.
CLIENT_FIELDS: dict[str, dict[str, str]] = {
    "join": {"room": "required", "name": "required", "audio": "true", "video": "true", "resume": "null",
             "passcode": "null"},
    "signal": {"to": "required", "conn": "null", "description": "one of", "candidate": "one of",
               "view": "one of"},
    "media": {"audio": "required", "video": "required", "screen": "null"},
    "rename": {"name": "required"},
    "ping": {},
    "leave": {},
    "hand": {"raised": "required"},
    "chat": {"text": "required"},
    "lock": {"locked": "required"},
    "passcode": {"passcode": "null"},
}
SERVER_TYPES = ("welcome", "peer-joined", "peer-left", "peer-updated", "signal", "ice-servers", "pong", "shutdown",
                "error", "chat", "chat-history", "room-updated")
MAX_PASSCODE = 64
MAX_VIEW = 16384  # pixels: larger than any screen


def _bad(kind: str, what: str) -> ProtocolError:
    return ProtocolError("bad-field", f"{kind}: {what}")


def utf8_size(text: str, limit: int) -> int:
    """The UTF-8 size of text, or limit + 1 when it is certainly over the limit.

    A lone surrogate (a JSON escape such as "\\ud800") cannot be encoded at all: it counts
    as over any limit, so callers refuse it as they refuse an oversized string."""
    if len(text) > limit:
        return limit + 1
    if text.isascii():  # one byte a character: no need to encode it to know
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return limit + 1


def _text(value: Any, kind: str, name: str, limit: int) -> str:
    """A relayed string: a str of at most `limit` UTF-8 bytes, encodable as UTF-8."""
    if not isinstance(value, str) or utf8_size(value, limit) > limit:
        raise _bad(kind, f"'{name}' must be a string of at most {limit} bytes of UTF-8")
    return value


def _shown(ch: str) -> bool:
    """Whether a character may stay in a display name.

    Control and format characters go (they reorder or hide text), except the zero-width
    joiner that emoji sequences need; so do lone surrogates (Cs: they cannot be encoded,
    and would break every frame that carries the name) and non-characters."""
    if ch == "\u200d":
        return True
    if unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
        return False
    code = ord(ch)
    return not (0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE)


def clean_text(value: Any, kind: str, limit: int) -> str:
    """Chat text: what `_shown` keeps, plus line breaks and tabs; trimmed at the ends."""
    if not isinstance(value, str):
        raise _bad(kind, "'text' must be a string")
    text = "".join(ch for ch in value if ch in "\n\t" or _shown(ch)).strip() if len(value) <= 2 * limit else value
    if not text:
        raise UserError("chat-empty", "A message needs some text.")
    if len(text) > limit:
        raise UserError("chat-too-long", f"A message may be at most {limit} characters.")
    return text


def clean_name(value: Any, kind: str = "join") -> str:
    """A display name: any Unicode, trimmed, control characters removed, 1-40 characters."""
    if not isinstance(value, str):
        raise _bad(kind, "'name' must be a string")
    if len(value) > 4 * MAX_NAME:
        raise _bad(kind, "'name' is far too long")
    text = "".join(ch for ch in value if _shown(ch))
    text = " ".join(text.split())
    if not text or len(text) > MAX_NAME:
        raise UserError("bad-name", f"A name must be 1 to {MAX_NAME} characters.")
    return text


def check_room(value: Any) -> str:
    """Room names are case-insensitive: the canonical form is lower case."""
    if not isinstance(value, str):
        raise _bad("join", "'room' must be a string")
    if not ROOM_RE.fullmatch(value):
        raise UserError("bad-room", "A room name is 1 to 40 letters, digits, '-' or '_'.")
    return value.lower()


def _bool_field(msg: dict[str, Any], key: str, kind: str, default: bool | None = None) -> bool:
    if key not in msg:
        if default is None:
            raise _bad(kind, f"'{key}' is missing")
        return default
    value = msg[key]
    if not isinstance(value, bool):
        raise _bad(kind, f"'{key}' must be true or false")
    return value


def _join(msg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "join",
        "room": check_room(msg.get("room")),
        "name": clean_name(msg.get("name")),
        "audio": _bool_field(msg, "audio", "join", True),
        "video": _bool_field(msg, "video", "join", True),
        "resume": None,
        "passcode": None,
    }
    resume = msg.get("resume")
    if resume is not None:
        if not isinstance(resume, str) or not TOKEN_RE.fullmatch(resume):
            raise _bad("join", "'resume' must be a token string")
        out["resume"] = resume
    passcode = msg.get("passcode")
    if passcode is not None:
        out["passcode"] = _text(passcode, "join", "passcode", MAX_PASSCODE)
    return out


def _description(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _bad("signal", "'description' must be an object")
    kind, sdp = value.get("type"), value.get("sdp")
    if kind not in ("offer", "answer"):
        raise _bad("signal", "'description.type' must be 'offer' or 'answer'")
    return {"type": kind, "sdp": _text(sdp, "signal", "description.sdp", MAX_SDP)}


def _candidate(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("signal", "'candidate' must be an object or null")
    out: dict[str, Any] = {"candidate": _text(value.get("candidate"), "signal", "candidate.candidate",
                                              MAX_CANDIDATE)}
    mid = value.get("sdpMid")
    if mid is not None:
        out["sdpMid"] = _text(mid, "signal", "candidate.sdpMid", MAX_MID)
    index = value.get("sdpMLineIndex")
    if index is not None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 1024:
            raise _bad("signal", "'candidate.sdpMLineIndex' must be a small integer or null")
        out["sdpMLineIndex"] = index
    ufrag = value.get("usernameFragment")
    if ufrag is not None:
        out["usernameFragment"] = _text(ufrag, "signal", "candidate.usernameFragment", MAX_UFRAG)
    return out


def _signal(msg: dict[str, Any]) -> dict[str, Any]:
    to = msg.get("to")
    if not isinstance(to, str) or not PEER_ID_RE.fullmatch(to):
        raise _bad("signal", "'to' must be a peer id")
    present = [k for k in ("description", "candidate", "view") if k in msg]
    if len(present) != 1:
        raise _bad("signal", "exactly one of 'description', 'candidate' or 'view' is needed")
    out: dict[str, Any] = {"type": "signal", "to": to}
    conn = msg.get("conn")
    if conn is not None:
        if not isinstance(conn, str) or not CONN_RE.fullmatch(conn):
            raise _bad("signal", "'conn' must be 1-32 of A-Z a-z 0-9 - _")
        out["conn"] = conn
    if present[0] == "description":
        out["description"] = _description(msg["description"])
    elif present[0] == "candidate":
        out["candidate"] = _candidate(msg["candidate"])
    else:
        out["view"] = _view(msg["view"])
    return out


def _size(value: Any, kind: str, name: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise _bad(kind, f"'{name}' must be an integer from 0 to {limit}")
    return value


def _view(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise _bad("signal", "'view' must be an object")
    return {"width": _size(value.get("width"), "signal", "view.width", MAX_VIEW),
            "height": _size(value.get("height"), "signal", "view.height", MAX_VIEW)}


def _media(msg: dict[str, Any]) -> dict[str, Any]:
    screen = msg.get("screen")
    if screen is not None and (not isinstance(screen, str) or not STREAM_RE.fullmatch(screen)):
        raise _bad("media", "'screen' must be a stream id (1-64 of A-Z a-z 0-9 - _ { }) or null")
    return {"type": "media", "audio": _bool_field(msg, "audio", "media"), "video": _bool_field(msg, "video", "media"),
            "screen": screen}


def _hand(msg: dict[str, Any]) -> dict[str, Any]:
    return {"type": "hand", "raised": _bool_field(msg, "raised", "hand")}


def _chat(msg: dict[str, Any]) -> dict[str, Any]:
    return {"type": "chat", "text": clean_text(msg.get("text"), "chat", MAX_CHAT)}


def _lock(msg: dict[str, Any]) -> dict[str, Any]:
    return {"type": "lock", "locked": _bool_field(msg, "locked", "lock")}


def _passcode(msg: dict[str, Any]) -> dict[str, Any]:
    code = msg.get("passcode")
    if code is not None:
        code = _text(code, "passcode", "passcode", MAX_PASSCODE)
        if not code.strip():
            raise UserError("bad-passcode", "A passcode needs some characters (or null to remove it).")
    return {"type": "passcode", "passcode": code}


def _rename(msg: dict[str, Any]) -> dict[str, Any]:
    return {"type": "rename", "name": clean_name(msg.get("name"), "rename")}


def _bare(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda msg: {"type": kind}


PARSERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "join": _join,
    "signal": _signal,
    "media": _media,
    "rename": _rename,
    "ping": _bare("ping"),
    "leave": _bare("leave"),
    "hand": _hand,
    "chat": _chat,
    "lock": _lock,
    "passcode": _passcode,
}
assert tuple(PARSERS) == CLIENT_TYPES  # internal consistency, not input checking


def parse(frame: str | bytes) -> dict[str, Any]:
    """Decode one client text frame into a normalised message, or raise a SignalingError."""
    if isinstance(frame, bytes):
        raise ProtocolError("binary-frame", "Frames must be text (JSON), not binary.")
    if utf8_size(frame, MAX_FRAME) > MAX_FRAME:
        raise ProtocolError("too-large", f"A frame may be at most {MAX_FRAME} bytes.")
    try:
        msg = json.loads(frame)
    except (ValueError, RecursionError):
        raise ProtocolError("bad-json", "A frame must be one JSON object.") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad-json", "A frame must be one JSON object.")
    kind = msg.get("type")
    if not isinstance(kind, str) or kind not in PARSERS:
        shown = kind if isinstance(kind, str) and len(kind) <= 40 else "?"
        raise ProtocolError("unknown-type", f"Unknown message type {shown!r}.")
    if "from" in msg:
        raise ProtocolError("spoofed-sender", "The server names the sender; a client must not send 'from'.")
    return PARSERS[kind](msg)


# One encoder for every frame: json.dumps with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def wire(msg: dict[str, Any]) -> bytes:
    """A frame as the bytes sent. Parsing already refused text that cannot be encoded;
    'replace' only makes sure that no string a future change forgets to check can make
    a send raise."""
    return _ENCODER.encode(msg).encode("utf-8", "replace")


# -- frames the server sends ------------------------------------------------------

def welcome(peer_id: str, token: str, room: str, others: list[dict[str, Any]], ice: dict[str, Any],
            max_peers: int, resumed: bool, version: str, room_state: dict[str, Any]) -> dict[str, Any]:
    return {"type": "welcome", "id": peer_id, "token": token, "room": room, "peers": others, **ice,
            "maxPeers": max_peers, "resumed": resumed, "version": version, "roomState": room_state}


def chat(message: dict[str, Any]) -> dict[str, Any]:
    return {"type": "chat", **message}


def chat_history(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "chat-history", "messages": messages}


def room_updated(state: dict[str, Any], by: str) -> dict[str, Any]:
    return {"type": "room-updated", "roomState": state, "by": by}


def peer_joined(peer: dict[str, Any]) -> dict[str, Any]:
    return {"type": "peer-joined", "peer": peer}


def peer_updated(peer: dict[str, Any]) -> dict[str, Any]:
    return {"type": "peer-updated", "peer": peer}


def peer_left(peer_id: str) -> dict[str, Any]:
    return {"type": "peer-left", "id": peer_id}


def relayed(msg: dict[str, Any], sender: str) -> dict[str, Any]:
    """A parsed `signal` as its recipient gets it: the sender stamped, the address gone."""
    out = {k: v for k, v in msg.items() if k != "to"}
    out["from"] = sender
    return out


def ice_servers(ice: dict[str, Any]) -> dict[str, Any]:
    return {"type": "ice-servers", **ice}


def pong() -> dict[str, Any]:
    return {"type": "pong"}


def shutdown(reason: str) -> dict[str, Any]:
    return {"type": "shutdown", "value": reason}
