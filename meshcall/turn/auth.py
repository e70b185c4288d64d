"""Long-term credentials (RFC 8489 §9.2) with TURN REST usernames, and nonces.

No sockets here: :class:`Authenticator` looks at a decoded request and says
who sent it or why not; :func:`encode_response` signs an answer the way the
request was signed. The server does the sending.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass
from typing import Callable

from . import codec
from .codec import Attr, Class, Message, Method
from .credentials import rest_password, username_expired, username_user

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class Auth:
    """A request that passed the long-term credential check."""

    username: str
    user: str  # the person: the part of a REST username after "<expiry>:"
    key: bytes
    use_sha256: bool


@dataclass(frozen=True)
class Refusal:
    """Why a request was not authenticated: the error code, and whether to send REALM and NONCE."""

    code: int
    reason: str | None = None
    challenge: bool = True


class Nonces:
    """Stateless nonces (RFC 8489 §9.2.2): an expiry stamp and a MAC over it and the client IP.

    Nothing is stored per client: a nonce verifies if its MAC matches and its
    stamp, on ``clock``, has not passed. The key is new at every start, so a
    restart makes old nonces stale (438) rather than wrong.
    """

    def __init__(self, lifetime: int, clock: Clock, key: bytes | None = None) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self._key = key if key is not None else os.urandom(20)

    def _mac(self, stamp: str, client_ip: str) -> str:
        return hmac.new(self._key, f"{stamp}/{client_ip}".encode(), hashlib.sha256).hexdigest()[:24]

    def mint(self, client_ip: str) -> bytes:
        stamp = f"{int(self.clock()) + self.lifetime:x}"
        return f"{stamp}-{self._mac(stamp, client_ip)}".encode()

    def fresh(self, nonce: bytes, client_ip: str) -> bool:
        try:
            text = nonce.decode("ascii")
        except UnicodeDecodeError:
            return False
        stamp, _, mac = text.partition("-")
        if not stamp or len(stamp) > 12 or any(c not in "0123456789abcdef" for c in stamp):
            return False
        if not hmac.compare_digest(mac, self._mac(stamp, client_ip)):
            return False
        return int(stamp, 16) > self.clock()


class Authenticator:
    """Checks USERNAME, REALM, NONCE and MESSAGE-INTEGRITY(-SHA256) of a request.

    ``wall_clock`` is Unix time, which REST usernames carry their expiry in.
    """

    def __init__(self, secret: bytes, realm: str, nonces: Nonces, wall_clock: Clock) -> None:
        self.secret = secret
        self.realm = realm
        self.nonces = nonces
        self.wall_clock = wall_clock

    def challenge_attributes(self, client_ip: str) -> list[tuple[int, bytes]]:
        """REALM and a fresh NONCE, for a 401 or 438 (RFC 8489 §9.2.4)."""
        return [(int(Attr.REALM), self.realm.encode()), (int(Attr.NONCE), self.nonces.mint(client_ip))]

    def check(self, request: Message, client_ip: str, ongoing_username: str | None) -> Auth | Refusal:
        """Who sent ``request``, or why it is refused.

        ``ongoing_username`` is the username of the allocation this request
        would act on, if any: REST credentials gate the start of a session,
        while an allocation already made keeps refreshing itself, its
        permissions and channels with the username it started with (a call,
        or a room display, may outlast the username). The password must still
        verify.
        """
        if request.integrity_offset is None and request.integrity_sha256_offset is None:
            return Refusal(401)
        raw_username = request.get(Attr.USERNAME)
        realm = request.get(Attr.REALM)
        nonce = request.get(Attr.NONCE)
        if raw_username is None or realm is None or nonce is None:
            return Refusal(400, "USERNAME, REALM and NONCE are required", challenge=False)
        try:
            username = raw_username.decode("utf-8")
        except UnicodeDecodeError:
            return Refusal(401, "bad username")
        ongoing = ongoing_username == username and request.method != Method.ALLOCATE
        if not self.secret or (username_expired(username, self.wall_clock()) and not ongoing):
            logger.debug("TURN: refusing expired or invalid username %r from %s", username[:64], client_ip)
            return Refusal(401, "expired or invalid username")
        key = codec.long_term_key(username, self.realm, rest_password(self.secret, username))
        use_sha256 = request.integrity_sha256_offset is not None
        if use_sha256:
            valid = codec.verify_integrity_sha256(request, key)
        else:
            valid = codec.verify_integrity(request, key)
        if not valid:
            logger.debug("TURN: wrong credentials for %r from %s", username[:64], client_ip)
            return Refusal(401, "wrong credentials")
        if not self.nonces.fresh(nonce, client_ip):
            return Refusal(438)
        return Auth(username, username_user(username) or username, key, use_sha256)


def encode_response(request: Message, cls: Class, attributes: list[tuple[int, bytes]], auth: Auth | None) -> bytes:
    """The answer to ``request``, signed in kind (RFC 8489 §9.2.4) and fingerprinted if it was."""
    response = Message(request.method, cls, request.transaction_id, attributes)
    key = auth.key if auth is not None else None
    return response.encode(
        key if auth is not None and not auth.use_sha256 else None,
        integrity_sha256_key=key if auth is not None and auth.use_sha256 else None,
        fingerprint=request.fingerprint_offset is not None,
    )
