"""What a TURN server is told at start: :class:`TurnConfig`.

Every default has one home. What the appliance lets people change comes
from its settings table (:mod:`meshcall.settings`, where the help text says
why each number is what it is); the rest from :mod:`meshcall.turn.limits`.
The standalone ``python -m meshcall.turn`` reads its defaults from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..settings import default as _setting
from .limits import BANDWIDTH_PER_ALLOCATION, MAX_LIFETIME, NONCE_LIFETIME, REALM


@dataclass
class TurnConfig:
    """Settings of the TURN server (see :mod:`meshcall.turn`)."""

    listen: list[str]
    port: int = _setting("turn_port")
    secret: bytes = b""
    realm: str = REALM
    relay_min_port: int = _setting("relay_min_port")
    relay_max_port: int = _setting("relay_max_port")
    allow_loopback_peers: bool = _setting("turn_allow_loopback")
    # The appliance's other service ports on its own addresses; the TURN port is added at start.
    forbidden_ports: frozenset[int] = frozenset()
    max_allocations: int = _setting("turn_max_allocations")
    max_allocations_per_user: int = _setting("turn_max_allocations_per_user")
    # Also the most TCP connections from one address (each holds at most one allocation).
    max_allocations_per_ip: int = _setting("turn_max_allocations_per_ip")
    max_lifetime: int = MAX_LIFETIME
    bandwidth_per_allocation: int = BANDWIDTH_PER_ALLOCATION  # bytes/s
    nonce_lifetime: int = NONCE_LIFETIME
