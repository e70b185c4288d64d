"""TURN REST credentials: time-limited usernames signed with a shared secret.

The scheme (draft-uberti-behave-turn-rest, as implemented by coturn's
``--use-auth-secret``): the username is ``<expiry-unix-time>:<user>`` and the
password is ``base64(HMAC-SHA1(secret, username))``. The server recomputes
the password from the username, so it keeps no per-user state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

SEPARATOR = ":"


def rest_password(secret: bytes, username: str) -> str:
    """base64(HMAC-SHA1(secret, username))."""
    mac = hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(mac).decode("ascii")


def rest_credentials(secret: bytes, user: str, ttl: int, now: float | None = None) -> tuple[str, str]:
    """(username, password) valid for ``ttl`` seconds from ``now`` (default: the clock)."""
    if ttl <= 0:
        raise ValueError(f"ttl must be positive, not {ttl}")
    if SEPARATOR in user:
        raise ValueError(f"user {user!r} must not contain {SEPARATOR!r}")
    moment = time.time() if now is None else now
    username = f"{int(moment) + int(ttl)}{SEPARATOR}{user}"
    return username, rest_password(secret, username)


def username_expiry(username: str) -> int | None:
    """The expiry time in a REST username, or None if it has none."""
    stamp = username.split(SEPARATOR, 1)[0]
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        return None
    return int(stamp)


def username_user(username: str) -> str:
    """The user part of a REST username (after the first separator; empty if none)."""
    parts = username.split(SEPARATOR, 1)
    return parts[1] if len(parts) == 2 else ""


def username_expired(username: str, now: float) -> bool:
    """True if the username's expiry has passed, or if it carries no expiry at all."""
    expiry = username_expiry(username)
    return expiry is None or expiry < now
