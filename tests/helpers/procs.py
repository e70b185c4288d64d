"""Servers as subprocesses on loopback, for the tests and the benchmarks alike.

`Process` is any server that is ready once an HTTP(S) URL answers; `Meshcall` is the real
appliance (CLI or built executable) on free loopback ports with its own data dir. Both
are stopped by the PID they were started with. The small socket and TLS helpers the
clients of those servers need live here too."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Sequence

from . import logcheck

ROOT = Path(__file__).resolve().parents[2]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """n distinct ports free for TCP and UDP (TURN needs both)."""
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", p))
        except OSError:
            continue
        if p not in ports:
            ports.append(p)
    return ports


def insecure_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A client context that trusts `ca_file`, or without one skips verification (the
    appliance's self-signed chain on 127.0.0.1)."""
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def get_json(url: str, ctx: ssl.SSLContext | None = None, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, context=ctx or insecure_context(), timeout=timeout) as resp:
        return json.loads(resp.read())


def raise_nofile(want: int = 16384) -> int:
    """Raise this process's soft limit on open files towards `want` (at most the hard
    limit): load generators and reference servers hold thousands of sockets."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, want), hard)
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


class Process:
    """A server subprocess that is ready once `url + probe` answers over HTTP(S).

    Its output is kept in a temporary file and checked for tracebacks and ERROR lines
    when the test that made it ends (and at `__exit__`), unless `expect_errors` is set:
    see helpers/logcheck.py. `open_files` raises the child's limit on open files before
    it starts, for servers that do not raise it themselves."""

    def __init__(self, name: str, command: Sequence[str], url: str, probe: str = "/healthz",
                 args: Sequence[str] = (), env: dict[str, str] | None = None, expect_errors: bool = False,
                 open_files: int | None = None) -> None:
        self.name = name
        self.command = list(command)
        self.args = list(args)
        self.base_url = url
        self.probe = probe
        self.env = {**os.environ, **(env or {})}
        self.expect_errors = expect_errors
        self.open_files = open_files
        self.proc: subprocess.Popen[bytes] | None = None
        # Two opens of one file: the child writes through an append-only handle of its own,
        # and the test reads through another. With one shared handle, the test's seek(0)
        # to read would move the child's write position too, and its next line would
        # overwrite the start of its own log.
        fd, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
        os.close(fd)
        self._log_writer = open(path, "ab")
        self.log_file = open(path, "rb")
        os.unlink(path)  # both handles keep it; nothing is left behind
        self._closed_output: str | None = None
        logcheck.watch(self)

    @property
    def url(self) -> str:
        return self.base_url

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def _ready(self) -> bool:
        ctx = insecure_context() if self.url.startswith("https:") else None
        try:
            with urllib.request.urlopen(self.url + self.probe, context=ctx, timeout=1):
                return True
        except OSError:
            return False

    # A bound, not an expectation: a cold start on 2 busy cores has taken over 20 s.
    def start(self, timeout: float = 60) -> "Process":
        limit = self.open_files
        preexec: Callable[[], Any] | None = (lambda: raise_nofile(limit)) if limit else None
        self.proc = subprocess.Popen(self.command + self.args, stdout=self._log_writer, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=ROOT, preexec_fn=preexec)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            if self._ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        if self._closed_output is not None:
            return self._closed_output  # kept for the check at the end of the test
        self.log_file.seek(0)
        return self.log_file.read().decode(errors="replace")

    def wait_for(self, text: str, timeout: float = 10) -> str:
        """The log once `text` appears in it (start() returns at the first HTTPS answer,
        before start-up has finished)."""
        deadline = time.monotonic() + timeout
        while text not in (out := self.output()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in meshcall's log within {timeout}s:\n{out}")
            time.sleep(0.05)
        return out

    def terminate(self, timeout: float = 5) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds taken)."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def close(self) -> None:
        self.stop()
        if self._closed_output is None:
            self._closed_output = self.output()
        self.log_file.close()
        self._log_writer.close()

    def assert_clean(self) -> None:
        """Tests run clean: no traceback and no error line in the server's log."""
        if not self.expect_errors and logcheck.scan(self.output()):
            raise AssertionError(f"{self.name} logged errors:\n" + self.output())

    def __enter__(self) -> "Process":
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            self.stop()
            if exc_type is None:
                self.assert_clean()
        finally:
            self.close()


class Meshcall(Process):
    """One running meshcall process on free loopback ports with its own data dir.

    HTTPS on `port` (plain HTTP with `--proxy` among the args), the onboarding port on
    `http_port`, STUN/TURN on `turn_port` only with `turn=True`."""

    def __init__(self, args: Sequence[str] = (), command: Sequence[str] | None = None,
                 data_dir: Path | None = None, turn: bool = False, env: dict[str, str] | None = None,
                 host: str = "127.0.0.1", expect_errors: bool = False) -> None:
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="meshcall-test-")
            data_dir = Path(self._tmp.name) / "data"
        self.data_dir = data_dir
        self.port, self.http_port, self.turn_port = free_ports(3)
        self.host = host
        super().__init__(
            "meshcall", command or [sys.executable, "-m", "meshcall"], "", "/healthz",
            args=["--host", host, "--port", str(self.port), "--http-port", str(self.http_port),
                  "--data-dir", str(data_dir), *(["--turn-port", str(self.turn_port)] if turn else ["--no-turn"]),
                  *args],
            env=env, expect_errors=expect_errors)

    @property
    def url(self) -> str:
        scheme = "http" if "--proxy" in self.args else "https"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self, timeout: float = 60) -> "Meshcall":
        super().start(timeout)
        return self

    def close(self) -> None:
        super().close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "Meshcall":
        return self.start()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """For urllib.request.build_opener: a redirect comes back as an HTTPError to inspect."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
