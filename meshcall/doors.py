"""Who gets a connection: limits at the door of the HTTPS and onboarding ports.

The appliance runs on guest and school networks, where anyone may open connections and
never use them. Three things keep that from locking out everyone else:

- every connection has deadlines: the TLS handshake (here), the request headers and the
  body (Tornado's `HTTPServer` timeouts, set in `server.py`);
- one address may hold only so many connections at once (`max_connections_per_address`);
- when the process runs out of file descriptors, the listening socket is paused for a
  moment instead of being retried at once, which would spin a core and write the same
  error thousands of times a second.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any, Callable, Iterable

from tornado import httpserver, ioloop
from tornado.iostream import IOStream, SSLIOStream

log = logging.getLogger(__name__)

# How long a listening socket stays paused after running out of file descriptors: long
# enough not to spin, short enough that a freed descriptor is used soon.
ACCEPT_PAUSE_SECONDS = 0.25
# Accept at most this many connections per readiness event, so a flood of connections
# cannot starve the event loop (Tornado's own accept loop uses the same bound).
ACCEPT_BATCH = 128
# Out of descriptors (process or system), or out of kernel memory for another socket.
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def raise_open_files_limit() -> tuple[int, int] | None:
    """Raise this process's soft limit on open files to the hard limit.

    Each connection is a file descriptor, and many systems start processes with a soft
    limit of 1024. Returns (before, after), or None where there are no such limits."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        # Linux refuses an infinite soft limit for files; the kernel's own cap applies.
        target = max(soft, _nr_open())
    else:
        target = hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, target
    return soft, soft


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 16


def _address_key(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


class Doors:
    """Connections per peer address, shared by every server of one appliance.

    `per_address` 0 means no cap (behind a reverse proxy every connection comes from the
    proxy, so the cap belongs there)."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address
        self._open: dict[str, set[IOStream]] = {}

    def count(self, address: str) -> int:
        streams = self._open.get(address)
        if not streams:
            return 0
        # A stream is tracked from accept to close. Closed ones are pruned here rather
        # than through a close callback: an HTTP connection hands its stream to the
        # WebSocket on upgrade, and a stream has room for only one close callback.
        live = {s for s in streams if not s.closed()}
        if live:
            self._open[address] = live
        else:
            del self._open[address]
        return len(live)

    def admit(self, address: Any) -> bool:
        if not self.per_address:
            return True
        key = _address_key(address)
        if self.count(key) < self.per_address:
            return True
        log.info("connections: %s already has %d open; refusing another (--max-connections-per-address)",
                 key, self.per_address)
        return False

    def track(self, address: Any, stream: IOStream) -> None:
        if self.per_address:
            self._open.setdefault(_address_key(address), set()).add(stream)

    def sweep(self) -> None:
        """Forget addresses whose connections have all closed (bounds the table)."""
        for key in list(self._open):
            self.count(key)


class GuardedHTTPServer(httpserver.HTTPServer):
    """An `HTTPServer` with a TLS handshake deadline, a per-address cap and an accept
    loop that pauses instead of spinning when file descriptors run out.

    Extra keyword arguments: ``doors`` (a `Doors`, shared between servers) and
    ``tls_handshake_timeout`` (seconds). The rest go to `HTTPServer` unchanged."""

    def initialize(self, *args: Any, doors: Doors | None = None, tls_handshake_timeout: float | None = None,
                   **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.doors = doors or Doors(0)
        self.tls_handshake_timeout = tls_handshake_timeout

    # Tornado's add_accept_handler lets an EMFILE from accept() escape into the event
    # loop, which logs a traceback and calls it again at once while the socket stays
    # readable: a busy loop. This replaces it; TCPServer.stop() calls what is stored in
    # _handlers to unregister, as it does for Tornado's own handler.
    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._accept_on(sock)

    def _accept_on(self, sock: socket.socket) -> Callable[[], None]:
        io_loop = ioloop.IOLoop.current()
        state: dict[str, Any] = {"removed": False, "paused": None}

        def accept(fd: Any, events: int) -> None:
            for _ in range(ACCEPT_BATCH):
                if state["removed"]:
                    return
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno not in _RESOURCE_ERRNOS:
                        raise
                    pause(exc)
                    return
                if not self.doors.admit(address):
                    connection.close()
                    continue
                self._handle_connection(connection, address)

        def pause(exc: OSError) -> None:
            io_loop.remove_handler(sock)
            state["paused"] = io_loop.call_later(ACCEPT_PAUSE_SECONDS, resume)
            log.warning("connections: cannot accept more (%s); pausing new connections for %g s",
                        exc.strerror or exc, ACCEPT_PAUSE_SECONDS)

        def resume() -> None:
            state["paused"] = None
            if not state["removed"]:
                io_loop.add_handler(sock, accept, ioloop.IOLoop.READ)

        def remove() -> None:
            state["removed"] = True
            if state["paused"] is not None:
                io_loop.remove_timeout(state["paused"])
                state["paused"] = None
            else:
                io_loop.remove_handler(sock)

        io_loop.add_handler(sock, accept, ioloop.IOLoop.READ)
        return remove

    def handle_stream(self, stream: IOStream, address: Any) -> None:
        self.doors.track(address, stream)
        if isinstance(stream, SSLIOStream) and self.tls_handshake_timeout:
            self._handshake_deadline(stream, self.tls_handshake_timeout)
        super().handle_stream(stream, address)

    @staticmethod
    def _handshake_deadline(stream: SSLIOStream, seconds: float) -> None:
        # Tornado bounds the handshake only together with the headers (the header
        # timeout); a client that never finishes its TLS handshake is cut off sooner.
        io_loop = ioloop.IOLoop.current()
        done = stream.wait_for_handshake()
        timer = io_loop.call_later(seconds, lambda: None if done.done() else stream.close())
        done.add_done_callback(lambda _: io_loop.remove_timeout(timer))
