"""Signaling frames: parse and validate what clients send (pure, no I/O).

Every check here maps to a stable error code written in docs/protocol.md."""

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
ROOM_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
PEER_ID_RE = re.compile(r"^p[0-9a-f]{6,16}$")

CLIENT_TYPES = ("join", "signal", "media", "rename", "ping", "leave")
SERVER_TYPES = ("welcome", "peer-joined", "peer-left", "peer-updated", "signal", "ice-servers", "pong", "shutdown",
                "error")


def _bad(kind: str, what: str) -> ProtocolError:
    return ProtocolError("bad-field", f"{kind}: {what}")


def clean_name(value: Any, kind: str = "join") -> str:
    """A display name: any Unicode, trimmed, control characters removed, 1-40 characters."""
    if not isinstance(value, str):
        raise _bad(kind, "'name' must be a string")
    if len(value) > 4 * MAX_NAME:
        raise _bad(kind, "'name' is far too long")
    text = "".join(ch for ch in value if unicodedata.category(ch) not in ("Cc", "Cf") or ch == "\u200d")
    text = " ".join(text.split())
    if not text or len(text) > MAX_NAME:
        raise UserError("bad-name", f"A name must be 1 to {MAX_NAME} characters.")
    return text


def check_room(value: Any) -> str:
    if not isinstance(value, str):
        raise _bad("join", "'room' must be a string")
    if not ROOM_RE.match(value):
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
        "password": None,
    }
    resume = msg.get("resume")
    if resume is not None:
        if not isinstance(resume, str) or not 1 <= len(resume) <= MAX_TOKEN:
            raise _bad("join", "'resume' must be a token string")
        out["resume"] = resume
    password = msg.get("password")
    if password is not None:
        if not isinstance(password, str) or len(password) > 128:
            raise _bad("join", "'password' must be a string of at most 128 characters")
        out["password"] = password
    return out


def _description(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _bad("signal", "'description' must be an object")
    kind, sdp = value.get("type"), value.get("sdp")
    if kind not in ("offer", "answer"):
        raise _bad("signal", "'description.type' must be 'offer' or 'answer'")
    if not isinstance(sdp, str) or len(sdp) > MAX_SDP:
        raise _bad("signal", f"'description.sdp' must be a string of at most {MAX_SDP} characters")
    return {"type": kind, "sdp": sdp}


def _candidate(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("signal", "'candidate' must be an object or null")
    cand = value.get("candidate")
    if not isinstance(cand, str) or len(cand) > MAX_CANDIDATE:
        raise _bad("signal", f"'candidate.candidate' must be a string of at most {MAX_CANDIDATE} characters")
    out: dict[str, Any] = {"candidate": cand}
    mid = value.get("sdpMid")
    if mid is not None:
        if not isinstance(mid, str) or len(mid) > 32:
            raise _bad("signal", "'candidate.sdpMid' must be a short string or null")
        out["sdpMid"] = mid
    index = value.get("sdpMLineIndex")
    if index is not None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 1024:
            raise _bad("signal", "'candidate.sdpMLineIndex' must be a small integer or null")
        out["sdpMLineIndex"] = index
    ufrag = value.get("usernameFragment")
    if ufrag is not None:
        if not isinstance(ufrag, str) or len(ufrag) > 256:
            raise _bad("signal", "'candidate.usernameFragment' must be a short string or null")
        out["usernameFragment"] = ufrag
    return out


def _signal(msg: dict[str, Any]) -> dict[str, Any]:
    to = msg.get("to")
    if not isinstance(to, str) or not PEER_ID_RE.match(to):
        raise _bad("signal", "'to' must be a peer id")
    has_desc, has_cand = "description" in msg, "candidate" in msg
    if has_desc == has_cand:
        raise _bad("signal", "exactly one of 'description' or 'candidate' is needed")
    out: dict[str, Any] = {"type": "signal", "to": to}
    if has_desc:
        out["description"] = _description(msg["description"])
    else:
        out["candidate"] = _candidate(msg["candidate"])
    return out


def _media(msg: dict[str, Any]) -> dict[str, Any]:
    return {"type": "media", "audio": _bool_field(msg, "audio", "media"), "video": _bool_field(msg, "video", "media")}


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
}
assert tuple(PARSERS) == CLIENT_TYPES  # internal consistency, not input checking


def parse(frame: str | bytes) -> dict[str, Any]:
    """Decode one client frame into a normalised message, or raise a SignalingError."""
    if len(frame) > MAX_FRAME:
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


def encode(msg: dict[str, Any]) -> str:
    return _ENCODER.encode(msg)
