"""Start the real meshcall (CLI or built executable) as a subprocess and stop it by PID."""

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
from typing import Any, Sequence

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
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def get_json(url: str, ctx: ssl.SSLContext | None = None, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, context=ctx or insecure_context(), timeout=timeout) as resp:
        return json.loads(resp.read())


class Meshcall:
    """One running meshcall process on free loopback ports with its own data dir."""

    def __init__(self, args: Sequence[str] = (), command: Sequence[str] | None = None,
                 data_dir: Path | None = None, turn: bool = False, env: dict[str, str] | None = None,
                 host: str = "127.0.0.1") -> None:
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="meshcall-test-")
            data_dir = Path(self._tmp.name) / "data"
        self.data_dir = data_dir
        self.port, self.http_port, self.turn_port = free_ports(3)
        self.command = list(command or [sys.executable, "-m", "meshcall"])
        self.host = host
        self.args = ["--host", host, "--port", str(self.port), "--http-port", str(self.http_port),
                     "--data-dir", str(data_dir), *(["--turn-port", str(self.turn_port)] if turn else ["--no-turn"]),
                     *args]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = tempfile.TemporaryFile()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self, timeout: float = 20) -> "Meshcall":
        self.proc = subprocess.Popen(self.command + self.args, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"meshcall exited with {self.proc.returncode}:\n{self.output()}")
            try:
                get_json(self.url + "/healthz", timeout=1)
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"meshcall did not answer within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        self.log_file.seek(0)
        return self.log_file.read().decode(errors="replace")

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
        self.log_file.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "Meshcall":
        return self.start()

    def assert_clean(self) -> None:
        """Tests run clean: no traceback and no error line in the server's log."""
        bad = [line for line in self.output().splitlines() if "Traceback" in line or " ERROR " in line]
        if bad:
            raise AssertionError("meshcall logged errors:\n" + self.output())

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            self.stop()
            if exc_type is None:
                self.assert_clean()
        finally:
            self.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """For urllib.request.build_opener: a redirect comes back as an HTTPError to inspect."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
