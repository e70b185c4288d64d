"""meshcall's built-in STUN/TURN server (RFC 8489, RFC 8656) on asyncio.

- :mod:`meshcall.turn.codec`: the wire format, pure functions.
- :mod:`meshcall.turn.credentials`: TURN REST usernames and passwords.
- :mod:`meshcall.turn.policy`: which peers a relay may reach; rate limits.
- :mod:`meshcall.turn.allocations`: the allocation table, without I/O.
- :mod:`meshcall.turn.server`: :class:`TurnServer`, the asyncio transports.
- :mod:`meshcall.turn.selfcheck`: :func:`self_check`, an allocation through the server itself.
"""

from .credentials import rest_credentials, rest_password, username_expired
from .selfcheck import self_check
from .server import TurnConfig, TurnServer

__all__ = ["TurnConfig", "TurnServer", "rest_credentials", "rest_password", "self_check", "username_expired"]
