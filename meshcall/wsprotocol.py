"""RFC 6455 edge cases Tornado handles by dropping the TCP connection, answered with a
close code instead, so a client (and its user) learns why it was disconnected.

- A text frame that is not valid UTF-8 is answered with close code 1007 (§7.4.1,
  "data within a message that was not consistent with the type of the message").
- A frame over the size limit is answered with 1009. Tornado sends that close frame and
  then closes the socket at once; the rest of the oversized frame is still unread in the
  kernel's receive buffer, and closing a socket with unread data makes the kernel send a
  TCP reset, which the client sees instead of the close frame. So the rest of the frame
  is read and thrown away first, up to a bound in bytes and time.
- Frames that arrive after the server has sent its close frame are ignored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

from tornado import gen
from tornado.concurrent import Future
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketProtocol13

if TYPE_CHECKING:
    from tornado.websocket import WebSocketHandler

log = logging.getLogger(__name__)

CLOSE_INVALID_UTF8 = 1007
CLOSE_TOO_BIG = 1009
# Reading the rest of an oversized frame: at most this much, for at most this long.
DRAIN_MAX_BYTES = 16 * 1024 * 1024
DRAIN_SECONDS = 3.0
_DRAIN_CHUNK = 64 * 1024


class StrictWebSocketProtocol(WebSocketProtocol13):
    def __init__(self, handler: "WebSocketHandler", mask_outgoing: bool, params: Any) -> None:
        super().__init__(handler, mask_outgoing, params)
        self._draining = False
        self._last_close_code: int | None = None

    def _handle_message(self, opcode: int, data: bytes) -> "Optional[Future[None]]":
        if self.server_terminated:
            return None  # a close frame went out: nothing more is handled (RFC 6455 §5.5.1)
        if opcode == 0x1:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                on_bad = getattr(self.handler, "on_invalid_utf8", None)
                if on_bad is not None:
                    on_bad()
                if not self.server_terminated:
                    self.close(CLOSE_INVALID_UTF8, "invalid UTF-8")
                return None
        return super()._handle_message(opcode, data)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if not self.server_terminated:
            self._last_close_code = code
        super().close(code, reason)

    def _abort(self) -> None:
        if self._last_close_code == CLOSE_TOO_BIG and not self._draining and self.stream is not None \
                and not self.stream.closed():
            # Stop the frame loop (it would read the middle of the frame as a header) and
            # let the client read the 1009 close frame before the connection ends.
            self._draining = True
            self.client_terminated = True
            self.server_terminated = True
            gen.convert_yielded(self._drain_then_abort())
            return
        if self._draining:
            return  # the drain ends the connection itself
        super()._abort()

    async def _drain_then_abort(self) -> None:
        stream = self.stream
        loop_time = stream.io_loop.time
        deadline = loop_time() + DRAIN_SECONDS
        read = 0
        try:
            while read < DRAIN_MAX_BYTES and loop_time() < deadline:
                chunk = await gen.with_timeout(deadline, stream.read_bytes(_DRAIN_CHUNK, partial=True),
                                               quiet_exceptions=(StreamClosedError,))
                read += len(chunk)
        except (StreamClosedError, gen.TimeoutError):
            pass
        finally:
            self._draining = False
            stream.close()
            WebSocketProtocol13.close(self)
