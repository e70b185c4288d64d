"""The two kinds of signaling errors, each with a stable code (docs/protocol.md)."""

from __future__ import annotations

from typing import Any


class SignalingError(Exception):
    fatal = False
    code = "error"

    def __init__(self, code: str, value: str, **extra: Any) -> None:
        super().__init__(f"{code}: {value}")
        self.code = code
        self.value = value
        self.extra = extra  # machine-readable details some codes carry (room-full: maxPeers)

    def frame(self) -> dict[str, object]:
        return {"type": "error", "error": self.code, "value": self.value, "fatal": self.fatal, **self.extra}


class UserError(SignalingError):
    """Answered; the socket stays open."""

    fatal = False


class ProtocolError(SignalingError):
    """Answered, then only this socket is closed."""

    fatal = True


USER_ERRORS = ("room-full", "bad-room", "bad-name", "not-joined", "unknown-peer", "already-joined",
               "too-many-rooms", "room-locked", "passcode-required", "bad-passcode", "too-many-tries",
               "chat-empty", "chat-too-long", "chat-too-fast")
PROTOCOL_ERRORS = ("bad-json", "unknown-type", "bad-field", "too-large", "spoofed-sender", "rate-limited",
                   "binary-frame", "bad-utf8", "too-slow")

# WebSocket close codes for protocol errors: 4000-4999 are for applications; where
# RFC 6455 §7.4.1 has a code for the case (1003 unacceptable data type, 1007 data not
# consistent with the message type) that one is used.
CLOSE_CODES = {"rate-limited": 4429, "too-large": 4413, "binary-frame": 1003, "bad-utf8": 1007,
               "too-slow": 4408}
DEFAULT_CLOSE_CODE = 4400
