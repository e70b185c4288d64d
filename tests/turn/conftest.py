"""Fixtures: a live TurnServer on 127.0.0.1 in a background event loop, and helpers.

Every server, thread and subprocess started here is stopped in teardown, also
when the test fails. A record at ERROR level (a traceback out of a handler)
or an exception reaching the event loop fails the test.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from meshcall.turn.config import TurnConfig
from meshcall.turn.server import TurnServer

SECRET = b"test-secret"
COTURN_TOOLS = ("turnutils_uclient", "turnutils_stunclient", "turnutils_peer", "turnserver")


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class FakeClock:
    """A clock a test moves by hand: pass it as ``clock=`` or ``wall_clock=``.

    Read from the server's thread, moved from the test's: a float assignment,
    so no lock is needed.
    """

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class LiveServer:
    server: TurnServer
    loop: asyncio.AbstractEventLoop
    host: str = "127.0.0.1"
    loop_errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine in the server's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def in_loop(self, function: Any, *args: Any) -> Any:
        """Call a plain function in the server's loop and return its result."""

        async def run() -> Any:
            return function(*args)

        return self.call(run())

    def sweep(self) -> None:
        """Expire what is due now on the server's clock (after moving a FakeClock)."""
        self.in_loop(self.server.sweep)

    def stats(self) -> dict[str, int]:
        async def get() -> dict[str, int]:
            return self.server.stats()

        return dict(self.call(get()))


class ServerFactory:
    """Starts TurnServers in one background loop; stops them all at teardown."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda loop, context: self.loop_errors.append(context))
        self.thread = threading.Thread(target=self.loop.run_forever, name="turn-test-loop", daemon=True)
        self.thread.start()
        self.servers: list[TurnServer] = []

    def start(self, *, clock: Any = None, wall_clock: Any = None, **overrides: Any) -> LiveServer:
        """A started server; ``overrides`` are TurnConfig fields, the clocks default to the real ones."""
        settings: dict[str, Any] = {
            "listen": ["127.0.0.1"],
            "port": 0,
            "secret": SECRET,
            "allow_loopback_peers": True,
            "relay_min_port": 40000,
            "relay_max_port": 59999,
        }
        settings.update(overrides)
        clocks = {name: value for name, value in (("clock", clock), ("wall_clock", wall_clock)) if value is not None}
        server = TurnServer(TurnConfig(**settings), **clocks)
        asyncio.run_coroutine_threadsafe(server.start(), self.loop).result(10)
        self.servers.append(server)
        return LiveServer(server, self.loop, settings["listen"][0], self.loop_errors)

    def close(self) -> None:
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def turn_factory() -> Iterator[ServerFactory]:
    collector = _ErrorCollector()
    logging.getLogger("meshcall.turn").addHandler(collector)
    logging.getLogger("asyncio").addHandler(collector)
    factory = ServerFactory()
    try:
        yield factory
    finally:
        factory.close()
        logging.getLogger("meshcall.turn").removeHandler(collector)
        logging.getLogger("asyncio").removeHandler(collector)
    problems = [collector.format(r) if r.exc_info else r.getMessage() for r in collector.records]
    problems += [str(c.get("message")) + " " + repr(c.get("exception")) for c in factory.loop_errors]
    assert not problems, "errors logged while the TURN server ran:\n" + "\n".join(problems)


@pytest.fixture
def turn_server(turn_factory: ServerFactory) -> LiveServer:
    return turn_factory.start()


def require_coturn() -> None:
    missing = [tool for tool in COTURN_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"coturn tools missing: {', '.join(missing)}; install Debian's coturn "
            "(DEBIAN_FRONTEND=noninteractive apt-get install -y coturn)"
        )


class Processes:
    """Subprocesses of one test, stopped by PID at teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            **kwargs,
        )
        self.procs.append(proc)
        return proc

    def run(self, args: list[str], timeout: float = 60.0) -> str:
        """Run to completion; return combined output (also on timeout, then fail)."""
        proc = self.start(args)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            output, _ = proc.communicate()
            pytest.fail(f"{args[0]} did not finish in {timeout} s; output:\n{output}")
        return output

    @staticmethod
    def _kill(proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def close(self) -> None:
        for proc in self.procs:
            self._kill(proc)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.close()
