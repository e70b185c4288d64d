"""Tests run clean: a test fails when the server it ran logged an unexpected error.

Tornado logs a handler's exception and answers 500 (or closes a WebSocket); a test that
only checks "a bystander still works" would pass while every request crashes. So:

- In-process servers (Appliance, make_app under AsyncHTTPTestCase): the autouse fixture
  `server_log` attaches a `LogCheck` handler to the `meshcall`, `tornado` and `asyncio`
  loggers for every test, and fails the test at teardown if any record at ERROR or above,
  or any record carrying a traceback, was logged.
- Subprocess servers (`helpers.procs.Meshcall`): every instance made during a test is
  registered here, and its captured output is scanned at the test's teardown for
  tracebacks and ERROR lines (as well as at its own `__exit__`).

Opting out, for tests that provoke errors on purpose:
- `server_log.allow(r"regex")` in the test: records/lines matching it are expected;
- `Meshcall(..., expect_errors=True)`: that process's output is not checked;
- `@pytest.mark.server_errors_expected`: nothing is checked for that test.

The fixture is made available to every test by tests/conftest.py importing it.
"""

from __future__ import annotations

import logging
import re
from typing import Iterator, Protocol

import pytest

WATCHED_LOGGERS = ("meshcall", "tornado", "asyncio")
_FORMAT = logging.Formatter("%(levelname)s %(name)s: %(message)s")
_ERROR_LINE = re.compile(r"\bERROR\b|^Traceback \(most recent call last\):|^CRITICAL|\bCRITICAL\b")


class ServerOutput(Protocol):
    expect_errors: bool

    def output(self) -> str: ...


def scan(text: str, allow: list[re.Pattern[str]] | tuple[re.Pattern[str], ...] = ()) -> list[str]:
    """The lines of a server's output that show an error: 'Traceback', ERROR, CRITICAL."""
    return [line for line in text.splitlines()
            if _ERROR_LINE.search(line) and not any(p.search(line) for p in allow)]


class LogCheck(logging.Handler):
    """Collects every record at ERROR or above, or with a traceback, from the watched loggers."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.allowed: list[re.Pattern[str]] = []
        self.servers: list[ServerOutput] = []
        self._loggers: list[logging.Logger] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def allow(self, pattern: str) -> None:
        """Errors matching this regex (message, traceback or output line) are expected."""
        self.allowed.append(re.compile(pattern))

    def install(self) -> "LogCheck":
        for name in WATCHED_LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(self)
            self._loggers.append(logger)
        return self

    def uninstall(self) -> None:
        for logger in self._loggers:
            logger.removeHandler(self)
        self._loggers = []

    def watch(self, server: ServerOutput) -> None:
        self.servers.append(server)

    def problems(self) -> list[str]:
        found: list[str] = []
        for record in self.records:
            text = _FORMAT.format(record)  # with the traceback, if any
            if not any(p.search(text) for p in self.allowed):
                found.append(text)
        for server in self.servers:
            if server.expect_errors:
                continue
            bad = scan(server.output(), self.allowed)
            if bad:
                found.append("server process logged:\n" + "\n".join(bad) + "\n--- full output:\n" + server.output())
        return found

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise AssertionError("unexpected errors in the server log:\n" + "\n\n".join(problems))


# The check of the test now running; Meshcall registers itself here (see procs.py).
_current: list[LogCheck] = []


def watch(server: ServerOutput) -> None:
    """Have the running test's check scan this server process's output at teardown."""
    if _current:
        _current[-1].watch(server)


@pytest.fixture(autouse=True)
def server_log(request: pytest.FixtureRequest) -> Iterator[LogCheck]:
    check = LogCheck().install()
    _current.append(check)
    try:
        yield check
    finally:
        _current.remove(check)
        check.uninstall()
    if request.node.get_closest_marker("server_errors_expected") is None:
        check.check()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "server_errors_expected: do not fail on errors in the server log")
