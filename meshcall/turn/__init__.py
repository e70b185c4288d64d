"""meshcall's built-in STUN/TURN server (RFC 8489, RFC 8656) on asyncio.

- :mod:`meshcall.turn.codec`: the wire format, pure functions.
- :mod:`meshcall.turn.credentials`: TURN REST usernames and passwords.
- :mod:`meshcall.turn.policy`: which peers a relay may reach; rate limits.
- :mod:`meshcall.turn.config`: :class:`TurnConfig`, its defaults from the settings table.
- :mod:`meshcall.turn.limits`: protocol timers and internal limits, written down once.
- :mod:`meshcall.turn.allocations`: the allocation table, without I/O.
- :mod:`meshcall.turn.auth`: long-term credentials, nonces, signing answers.
- :mod:`meshcall.turn.transports`: UDP listeners, TCP framing, relay sockets.
- :mod:`meshcall.turn.allocator`: Allocate, Refresh, CreatePermission, ChannelBind, relaying.
- :mod:`meshcall.turn.server`: :class:`TurnServer`: lifecycle and the request dispatcher.
- :mod:`meshcall.turn.selfcheck`: :func:`self_check`, an allocation through the server itself.
"""

from .config import TurnConfig
from .credentials import rest_credentials, rest_password, username_expired
from .selfcheck import self_check
from .server import TurnServer

__all__ = ["TurnConfig", "TurnServer", "rest_credentials", "rest_password", "self_check", "username_expired"]
