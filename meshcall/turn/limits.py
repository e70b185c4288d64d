"""The TURN server's fixed numbers: protocol timers and internal limits.

What a person running the appliance may want to change is a setting in
:mod:`meshcall.settings` instead (ports, quotas); what is here follows from
the RFCs or from how the server is built, and is written down once.
"""

from __future__ import annotations

# --- protocol timers ---------------------------------------------------------

# RFC 8656 §3.2: the default allocation lifetime, and the longest this server grants.
DEFAULT_LIFETIME = 600
MAX_LIFETIME = 3600
# RFC 8656 §9: permissions last 300 s; §12: channel bindings 600 s.
PERMISSION_LIFETIME = 300.0
CHANNEL_LIFETIME = 600.0
# RFC 8656 §7.2: a reservation (EVEN-PORT with R) is kept about 30 s.
RESERVATION_LIFETIME = 30.0
# RFC 8489 §9.2: how long a nonce stays valid before a 438 asks for a new one.
NONCE_LIFETIME = 600
REALM = "meshcall"

# --- per allocation ----------------------------------------------------------

MAX_PERMISSIONS_PER_ALLOCATION = 64
MAX_CHANNELS_PER_ALLOCATION = 64
# Relayed bytes per second per allocation: a 720p video stream with headroom.
BANDWIDTH_PER_ALLOCATION = 2_000_000
# Peer datagrams larger than this cannot be framed back to the client (a Data
# indication with an IPv6 XOR-PEER-ADDRESS must fit a 16-bit length): dropped.
MAX_RELAY_PAYLOAD = 0xFFFF - 32
# How many relay ports to try before answering 508.
PORT_ATTEMPTS = 64

# --- TCP connections ---------------------------------------------------------

# TCP connections open at once (each may hold one allocation).
MAX_TCP_CONNECTIONS = 1000
# How long a TCP connection may stay open without an allocation, and without a
# request that passed authentication: a browser sends its authenticated
# Allocate one round trip after connecting, so idle connections (a flood of
# them, say) are gone long before the first limit.
TCP_IDLE_WITHOUT_ALLOCATION = 60.0
TCP_IDLE_WITHOUT_AUTHENTICATION = 10.0
# A TCP client whose unsent output exceeds this gets relayed data dropped.
TCP_WRITE_LIMIT = 1_000_000

# --- housekeeping and sockets ------------------------------------------------

# How often expired allocations, permissions, channels and reservations are swept.
SWEEP_INTERVAL = 1.0
# Socket buffers asked for on UDP sockets (the kernel caps them at
# net.core.rmem_max / wmem_max), so that a scheduling hiccup does not drop a
# burst of media: the listeners carry every client's traffic, a relay one's.
LISTENER_BUFFER_BYTES = 4 << 20
RELAY_BUFFER_BYTES = 512 << 10
