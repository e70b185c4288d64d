"""The appliance-wide access code (`--access-code`), for semi-public networks.

A browser that gives the right code once gets a cookie; the cookie, not the code, is what
admits it from then on. The cookie holds when it was issued and an HMAC of that under a
key derived from the appliance's own secret *and* the code: it says nothing about the
code, cannot be forged without the secret, and changing the code voids every cookie.

Pure: no Tornado, no sockets; time is passed in (as in buckets.py)."""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum

from .buckets import Buckets

COOKIE_NAME = "meshcall_access"
# A browser stays admitted this long after it gave the code (a school term's worth of
# weeks is too long for a guest network; a week of daily meetings is not).
COOKIE_MAX_AGE = 30 * 24 * 3600
# Wrong codes per address: a few typos at once, then one try every 6 s (as passcodes).
TRIES_BURST = 5
TRIES_PER_SECOND = 1 / 6
MAX_CODE_CHARS = 128
# Clocks of one machine do not go back much; a cookie "issued" further in the future
# than this was not issued by us.
FUTURE_SLACK = 300


class Verdict(Enum):
    OK = "ok"
    WRONG = "bad-access-code"
    TOO_MANY = "too-many-tries"


def _digest(text: str) -> bytes:
    # Compare digests, not the strings: compare_digest is constant-time only for
    # inputs of equal length, and hashing makes every input the same length.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class AccessGate:
    def __init__(self, code: str, secret: bytes, max_age: int = COOKIE_MAX_AGE) -> None:
        if not code.strip():
            raise ValueError("the access code must not be blank")
        self._code = _digest(code)
        self._key = hmac.new(secret, b"meshcall access cookie\0" + self._code, hashlib.sha256).digest()
        self.max_age = max_age
        self.tries = Buckets(TRIES_BURST, TRIES_PER_SECOND)

    def check(self, given: str, address: str, now: float) -> Verdict:
        """Whether `given` is the code. Once an address has used up its tries, not even
        the right code is looked at until a try is back (a guess rate, not a lockout)."""
        if not self.tries.can_take(address, now):
            return Verdict.TOO_MANY
        if hmac.compare_digest(_digest(given[:MAX_CODE_CHARS * 4]), self._code):
            return Verdict.OK
        self.tries.take(address, now)
        return Verdict.WRONG

    def _mac(self, issued: str) -> str:
        return hmac.new(self._key, issued.encode(), hashlib.sha256).hexdigest()

    def cookie(self, now: float) -> str:
        issued = str(int(now))
        return f"{issued}.{self._mac(issued)}"

    def admits(self, value: str | None, now: float) -> bool:
        """Whether a cookie value is one we issued, for this code, and not expired."""
        if not value or len(value) > 100:
            return False
        issued, dot, mac = value.partition(".")
        if not dot or not issued.isascii() or not issued.isdigit():
            return False
        if not hmac.compare_digest(mac.encode("utf-8", "surrogatepass"), self._mac(issued).encode()):
            return False
        age = now - int(issued)
        return -FUTURE_SLACK <= age <= self.max_age
