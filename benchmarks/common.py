"""What the benchmarks share: process CPU/RSS from /proc, the machine, and the servers measured.

Servers run through the tests' harness (tests/helpers/procs.py): every one listens on
127.0.0.1 only and is stopped by the PID it was started with."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

# One harness for tests and benchmarks: servers as subprocesses, free ports, client TLS.
from helpers.procs import Meshcall, Process, free_port, free_ports, insecure_context, raise_nofile  # noqa: E402,F401

PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (a gunicorn arbiter and its worker), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo and len(out) < 1000:  # bounded: a server has a handful of processes
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _sum_over_tree(pid: int, one: Callable[[int], float]) -> float:
    total = 0.0
    for p in process_tree(pid):
        try:
            total += one(p)
        except (OSError, ValueError):
            pass  # a process that ended between the listing and the read
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a server and its children: a gunicorn worker does the work, not the arbiter.
    (A worker that was killed and replaced takes its CPU with it: the bench reports restarts.)"""
    return _sum_over_tree(pid, cpu_seconds)


def tree_rss_bytes(pid: int) -> int:
    return int(_sum_over_tree(pid, rss_bytes))


def tree_thread_count(pid: int) -> int:
    return int(_sum_over_tree(pid, thread_count))


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


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


# Servers get longer to start than in the tests: gunicorn importing gevent on a machine
# shared with browser tests can take well over the harness's 20 s.
START_TIMEOUT = 90.0


class _BenchMeshcall(Meshcall):
    def start(self, timeout: float = START_TIMEOUT) -> "Meshcall":
        return super().start(timeout)


class _Reference(Process):
    def start(self, timeout: float = START_TIMEOUT) -> "Process":
        return super().start(timeout)


def meshcall_server(data_dir: Path, proxy: bool = False, turn: bool = False, args: tuple[str, ...] = ()) -> Meshcall:
    """The real appliance for a benchmark: its log is the bench's to read, not checked."""
    return _BenchMeshcall([*(["--proxy"] if proxy else []), *args], data_dir=data_dir, turn=turn, expect_errors=True)


def reference_server(name: str, argv: list[str], port: int) -> Process:
    """A reference stack (seed, floor) over TLS on 127.0.0.1, ready once /healthz answers."""
    return _Reference(name, argv, f"https://127.0.0.1:{port}", "/healthz", expect_errors=True, open_files=20000)


def test_certificate(data_dir: Path) -> tuple[Path, Path]:
    """The same kind of chain meshcall makes (its own CA + leaf), for the reference servers."""
    import ipaddress

    from meshcall.certs import ensure_certificates

    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert = ensure_certificates(data_dir, "localhost", [ipaddress.ip_address("127.0.0.1")])
    return cert.cert_file, cert.key_file
