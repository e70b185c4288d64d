"""Rate-limit log lines that a client can make the server write again and again.

A stranger on the network can send the same bad request thousands of times a second; if
each one writes a line, the log fills the disk and hides everything else. `LogThrottle`
is a `logging.Filter` that lets the first `burst` records of each message template
through per `interval` seconds, drops the rest, and then writes one summary line::

    suppressed 4231 similar lines in the last 10 s, the last: http: 400 GET /static/%00 from 10.0.0.9

Use it like this (the appliance attaches one to its HTTP loggers at start)::

    throttle = LogThrottle(burst=5, interval=10.0)
    throttle.attach(logging.getLogger("meshcall.web"))
    log.info("http: %d %s from %s", status, path, ip)   # %-style: the template is the key
    ...
    throttle.flush()          # write summaries of windows that have ended (call it now and then)
    throttle.detach()         # at shutdown; writes the summaries still pending

API:
- ``LogThrottle(burst=5, interval=10.0, clock=time.monotonic, max_keys=512)``.
- ``attach(*loggers)`` / ``detach()``: add or remove it as a filter of those loggers. It
  is a logger filter, not a handler filter: summaries are written through the logger the
  suppressed records came from, so they reach the same handlers.
- ``flush(now=None, force=False)``: write a summary for every key whose window has ended
  (every key with ``force``). Summaries are also written when the next record of the same
  key arrives after its window.
- ``suppressed``: how many records it has dropped in all (for tests and health).

The key is (logger name, level, ``record.msg``): the format string before its arguments,
so "400 for /a" and "400 for /b" count together as long as the path is an argument, not
part of an f-string. Records logged with an f-string still work but each distinct text
is its own key; past ``max_keys`` keys, all new templates share one key, so memory stays
bounded whatever a client sends.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

SUMMARY_ATTR = "meshcall_throttle_summary"
_OVERFLOW_KEY = ("*", 0, "*")
_LAST_TEXT_CHARS = 200


@dataclass
class _Window:
    start: float
    passed: int = 0
    dropped: int = 0
    last: logging.LogRecord | None = field(default=None, repr=False)


class LogThrottle(logging.Filter):
    """See the module docstring: at most `burst` records per template per `interval`."""

    def __init__(self, burst: int = 5, interval: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 512) -> None:
        super().__init__()
        if burst < 1 or interval <= 0:
            raise ValueError("burst must be at least 1 and interval above 0")
        self.burst, self.interval, self.clock, self.max_keys = burst, interval, clock, max_keys
        self.suppressed = 0
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self._loggers: list[logging.Logger] = []
        # Logging may come from other threads (asyncio.to_thread); the windows are shared.
        self._lock = threading.Lock()

    def attach(self, *loggers: logging.Logger) -> "LogThrottle":
        for logger in loggers:
            if logger not in self._loggers:
                logger.addFilter(self)
                self._loggers.append(logger)
        return self

    def detach(self) -> None:
        self.flush(force=True)
        for logger in self._loggers:
            logger.removeFilter(self)
        self._loggers = []

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, SUMMARY_ATTR, False):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        ended: _Window | None = None
        with self._lock:
            window = self._windows.get(key)
            if window is None and len(self._windows) >= self.max_keys:
                self._forget_idle(now)
                if len(self._windows) >= self.max_keys:
                    key = _OVERFLOW_KEY
                    window = self._windows.get(key)
            if window is not None and now - window.start >= self.interval:
                ended, window = window, None
            if window is None:
                window = self._windows[key] = _Window(now)
            if window.passed < self.burst:
                window.passed += 1
                keep = True
            else:
                window.dropped += 1
                window.last = record
                self.suppressed += 1
                keep = False
        if ended is not None and ended.dropped:
            self._summarise(ended)
        return keep

    def flush(self, now: float | None = None, force: bool = False) -> None:
        now = self.clock() if now is None else now
        with self._lock:
            done = [k for k, w in self._windows.items() if force or now - w.start >= self.interval]
            ended = [self._windows.pop(k) for k in done]
        for window in ended:
            if window.dropped:
                self._summarise(window)

    def _forget_idle(self, now: float) -> None:
        """Drop windows that have ended and dropped nothing (their summary would be empty)."""
        for k in [k for k, w in self._windows.items() if now - w.start >= self.interval and not w.dropped]:
            del self._windows[k]

    def _summarise(self, window: _Window) -> None:
        last = window.last
        if last is None:
            return
        try:
            text = last.getMessage()
        except (TypeError, ValueError):  # a record whose arguments do not fit its template
            text = str(last.msg)
        if len(text) > _LAST_TEXT_CHARS:
            text = text[:_LAST_TEXT_CHARS] + "…"
        summary = logging.LogRecord(last.name, last.levelno, last.pathname, last.lineno,
                                    "suppressed %d similar lines in the last %g s, the last: %s",
                                    (window.dropped, self.interval, text), None)
        setattr(summary, SUMMARY_ATTR, True)
        logging.getLogger(last.name).handle(summary)
