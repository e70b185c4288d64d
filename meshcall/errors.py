"""The two kinds of signaling errors, each with a stable code (docs/protocol.md)."""

from __future__ import annotations


class SignalingError(Exception):
    fatal = False
    code = "error"

    def __init__(self, code: str, value: str) -> None:
        super().__init__(f"{code}: {value}")
        self.code = code
        self.value = value

    def frame(self) -> dict[str, object]:
        return {"type": "error", "error": self.code, "value": self.value, "fatal": self.fatal}


class UserError(SignalingError):
    """Answered; the socket stays open."""

    fatal = False


class ProtocolError(SignalingError):
    """Answered, then only this socket is closed."""

    fatal = True


USER_ERRORS = ("room-full", "bad-room", "bad-name", "not-joined", "unknown-peer", "already-joined")
PROTOCOL_ERRORS = ("bad-json", "unknown-type", "bad-field", "too-large", "spoofed-sender", "rate-limited")

# WebSocket close codes for protocol errors (4000-4999 are for applications).
CLOSE_CODES = {"rate-limited": 4429, "too-large": 4413}
DEFAULT_CLOSE_CODE = 4400
