"""Shared bench helpers: process CPU/RSS from /proc, servers as subprocesses, the machine.

Every server here listens on 127.0.0.1 only and is stopped by the PID it was started with."""

from __future__ import annotations

import os
import platform
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def raise_nofile(want: int = 16384) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, want), hard)
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_tls() -> ssl.SSLContext:
    """Clients skip verification (self-signed chain on 127.0.0.1)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def machine() -> dict[str, object]:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "os": platform.platform(terse=True)}


class Server:
    """A server subprocess on 127.0.0.1 that answers `probe` once ready."""

    def __init__(self, name: str, argv: Sequence[str], port: int, tls: bool, probe: str,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.port, self.tls, self.probe = name, list(argv), port, tls, probe
        self.env = {**os.environ, **(env or {})}
        self.log = tempfile.TemporaryFile()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30) -> "Server":
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=ROOT, preexec_fn=lambda: raise_nofile(20000))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + self.probe, context=client_tls() if self.tls else None,
                                            timeout=2):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout}s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.close()


def meshcall_server(data_dir: Path, proxy: bool = False) -> Server:
    port = free_port()
    argv = [PYTHON, "-m", "meshcall", "--host", "127.0.0.1", "--port", str(port), "--http-port", "0",
            "--no-turn", "--data-dir", str(data_dir), *(["--proxy"] if proxy else [])]
    return Server("meshcall", argv, port, not proxy, "/healthz")


def test_certificate(data_dir: Path) -> tuple[Path, Path]:
    """The same kind of chain meshcall makes (its own CA + leaf), for the reference servers."""
    import ipaddress

    from meshcall.certs import ensure_certificates

    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert = ensure_certificates(data_dir, "localhost", [ipaddress.ip_address("127.0.0.1")])
    return cert.cert_file, cert.key_file
