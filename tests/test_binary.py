"""The one-file executable (dist/meshcall, built by ./scripts/build from build.spec), used
as an admin would use it: started as a subprocess on free loopback ports with its own data
dir and its own TMPDIR, stopped with SIGTERM.

The binary is rebuilt first when it is missing or older than any file it is made from.
It is never SIGKILLed while running: the one-file bootloader would leave its Python child
running and its _MEI* unpack dir behind (see Binary.stop)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from helpers.executable import ensure_executable
from helpers.procs import ROOT, Meshcall, get_json, insecure_context
from meshcall.bundle import Bundle

FINGERPRINT_RE = re.compile(r"certificate: SHA-256 ([0-9A-F:]{95})")


@pytest.fixture(scope="session")
def exe() -> Path:
    """dist/meshcall, rebuilt with ./scripts/build when missing or stale."""
    return ensure_executable()


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


class Binary(Meshcall):
    """The executable with a TMPDIR of its own (to see its _MEI* unpack dir come and go)."""

    def __init__(self, exe: Path, *args: str, data_dir: Path | None = None, turn: bool = False,
                 env: dict[str, str] | None = None) -> None:
        self.tmpdir = Path(tempfile.mkdtemp(prefix="meshcall-bin-tmp-"))
        super().__init__(args, command=[str(exe)], data_dir=data_dir, turn=turn,
                         env={"TMPDIR": str(self.tmpdir), **(env or {})})

    def unpack_dirs(self) -> list[str]:
        return sorted(p.name for p in self.tmpdir.glob("_MEI*"))

    def python_child(self) -> int:
        assert self.proc is not None
        kids = _children(self.proc.pid)
        assert len(kids) == 1, f"bootloader {self.proc.pid} should have one child, has {kids}"
        return kids[0]

    def stop(self) -> None:
        """SIGTERM and reap. Only if that fails: SIGKILL the Python child first, then the
        bootloader, so nothing keeps the port; the test then fails."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
            return
        except subprocess.TimeoutExpired:
            pass
        for kid in _children(self.proc.pid):
            os.kill(kid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait(5)
        raise AssertionError(f"the executable ignored SIGTERM:\n{self.output()}")

    def close(self) -> None:
        try:
            super().close()
        finally:
            for leftover in self.tmpdir.glob("_MEI*"):
                shutil.rmtree(leftover, ignore_errors=True)
            self.tmpdir.rmdir()


def run(cmd: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30, cwd=ROOT)


def peer_fingerprint(port: int, ca_file: Path) -> str:
    """SHA-256 of the leaf the server presents, verified with the install's CA as the only anchor."""
    ctx = ssl.create_default_context(cafile=str(ca_file))  # no system roots when cafile is given
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def fetch(url: str, ctx: ssl.SSLContext) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
        return resp.status, dict(resp.headers), resp.read()


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["--bogus"], ["--port", "x"], ["--cert", "a.pem"]])
def test_same_output_as_the_module(exe: Path, args: list[str]) -> None:
    frozen = run([str(exe)], *args)
    module = run([sys.executable, "-m", "meshcall"], *args)
    assert (frozen.returncode, frozen.stdout, frozen.stderr) == (module.returncode, module.stdout, module.stderr)
    if args == ["--version"]:
        from meshcall import __version__

        assert frozen.stdout.strip() == f"meshcall {__version__}" and frozen.returncode == 0


def test_serves_its_bundled_page_over_https_with_the_generated_chain(exe: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    # No Python on PATH and no Python variables: the executable brings its own.
    env = {"PATH": str(tmp_path), "PYTHONPATH": "", "PYTHONHOME": ""}
    mc = Binary(exe, data_dir=data, env=env)
    try:
        mc.start()
        ca = data / "ca.crt"
        assert ca.is_file() and (data / "server.crt").is_file()
        trust = ssl.create_default_context(cafile=str(ca))
        status, headers, body = fetch(mc.url + "/", trust)
        assert status == 200 and body == Bundle(ROOT / "assets").page("index.html").body
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        status, _, body = fetch(mc.url + "/static/js/room.js", trust)
        assert status == 200 and body == (ROOT / "assets" / "js" / "room.js").read_bytes()
        assert get_json(mc.url + "/healthz", trust)["status"] == "ok"
        # The assets come from inside the bundle: the running child is the executable
        # itself, unpacked into this test's TMPDIR.
        child = mc.python_child()
        assert Path(os.readlink(f"/proc/{child}/exe")) == exe.resolve()
        assert len(mc.unpack_dirs()) == 1, mc.unpack_dirs()
        log = mc.output()
        assert "meshcall 0.1.0: ready" in log and f"data dir: {data}" in log
        assert "Traceback" not in log
    except BaseException:
        print(mc.output())
        raise
    finally:
        mc.close()


def test_announces_its_names_by_mdns(exe: Path, tmp_path: Path) -> None:
    """zeroconf is imported lazily and partly compiled; the bundle must have all of it."""
    from helpers.netns import private_lan

    with private_lan() as (here, _):
        mc = Binary(exe, data_dir=tmp_path / "data")
        mc.host = here
        mc.args[mc.args.index("--host") + 1] = here
        try:
            mc.start()
            mc.wait_for("meshcall 0.1.0: ready")
            res = subprocess.run(["dig", "+short", "+time=1", "+tries=2", "-p", "5353", f"@{here}",
                                  "meshcall.local", "A"], capture_output=True, text=True, timeout=15)
            assert res.stdout.split() == [here], mc.output()
            mc.stop()
            mc.assert_clean()
        finally:
            mc.close()


def test_runs_the_built_in_turn_relay(exe: Path, tmp_path: Path) -> None:
    """meshcall.turn is imported lazily; the bundle must have it all the same."""
    mc = Binary(exe, data_dir=tmp_path / "data", turn=True)
    try:
        mc.start()
        stun = bytes.fromhex("0001 0000 2112a442") + os.urandom(12)  # RFC 8489 Binding request
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(5)
            udp.sendto(stun, ("127.0.0.1", mc.turn_port))
            reply = udp.recv(2048)
        assert reply[:2] == bytes.fromhex("0101") and reply[4:20] == stun[4:20]  # success, same transaction
        assert "TURN: " in mc.output() and "Traceback" not in mc.output()
        code, _ = mc.terminate(timeout=2)
        assert code == 0
    except BaseException:
        print(mc.output())
        raise
    finally:
        mc.close()


def test_sigterm_exits_0_quickly_and_cleans_up_and_a_restart_reuses_the_certificate(exe: Path,
                                                                                     tmp_path: Path) -> None:
    data = tmp_path / "data"
    fingerprints = []
    for attempt in range(2):
        mc = Binary(exe, data_dir=data)
        try:
            mc.start()
            assert mc.unpack_dirs(), "no _MEI* dir in the executable's TMPDIR"
            logged = FINGERPRINT_RE.search(mc.output())
            assert logged, mc.output()
            presented = peer_fingerprint(mc.port, data / "ca.crt")
            assert logged.group(1) == presented
            fingerprints.append(presented)
            code, _ = mc.terminate(timeout=2)
            assert code == 0, mc.output()
            assert mc.unpack_dirs() == [], "SIGTERM left the unpack dir behind"
            assert "shutdown: done" in mc.output()
            if attempt == 0:
                assert "making the certificate authority" in mc.output()
            else:
                assert "making the certificate authority" not in mc.output()
        except BaseException:
            print(mc.output())
            raise
        finally:
            mc.close()
    assert fingerprints[0] == fingerprints[1]


def test_default_data_dir_is_the_modules(exe: Path, tmp_path: Path) -> None:
    """Without --data-dir both use the per-user data directory (here under XDG_DATA_HOME),
    and the executable reuses what the module made there."""
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    expected = tmp_path / "xdg" / "meshcall"
    fingerprints = []
    for runner in ("module", "binary"):
        mc = Binary(exe, env=env) if runner == "binary" else Meshcall(env=env)
        at = mc.args.index("--data-dir")
        del mc.args[at:at + 2]
        try:
            mc.start()
            assert f"data dir: {expected}" in mc.output()
            found = FINGERPRINT_RE.search(mc.output())
            assert found, mc.output()
            fingerprints.append(found.group(1))
            assert mc.terminate(timeout=2)[0] == 0
        except BaseException:
            print(mc.output())
            raise
        finally:
            mc.close()
    assert (expected / "ca.crt").is_file() and fingerprints[0] == fingerprints[1]


def test_sigint_like_ctrl_c_also_exits_0(exe: Path, tmp_path: Path) -> None:
    mc = Binary(exe, data_dir=tmp_path / "data")
    try:
        mc.start()
        assert mc.proc is not None
        mc.proc.send_signal(signal.SIGINT)
        assert mc.proc.wait(2) == 0, mc.output()
        assert mc.unpack_dirs() == []
    finally:
        mc.close()


@pytest.fixture
def binary_server(exe: Path, tmp_path: Path) -> Iterator[Binary]:
    mc = Binary(exe, data_dir=tmp_path / "data")
    try:
        mc.start()
        yield mc
    except BaseException:
        print(mc.output())
        raise
    finally:
        mc.close()


@pytest.mark.browser
@pytest.mark.netns
def test_two_people_call_through_the_executable(binary_server: Binary) -> None:
    from browser.meet import decoding_from, frames_rising, joined_id, room_url, wait_for
    from helpers.browser import chromium

    errors: list[str] = []
    with chromium() as launched:
        browser: Any = launched
        contexts: list[Any] = []
        try:
            pages = []
            for name in ("Ada", "Grace"):
                ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 960, "height": 540})
                contexts.append(ctx)
                page = ctx.new_page()
                page.on("pageerror", lambda exc, page=page: errors.append(f"{page.url}: {exc}"))
                page.goto(room_url(binary_server.url, "binary", name))
                pages.append(page)
            a, b = pages
            ida, idb = joined_id(a), joined_id(b)
            wait_for(lambda: decoding_from(a, {idb}) and decoding_from(b, {ida}), 20, what="media both ways")
            frames_rising(a, idb)
            frames_rising(b, ida)
        finally:
            for ctx in contexts:
                ctx.close()
    assert not errors, errors
    assert get_json(binary_server.url + "/healthz", insecure_context())["status"] == "ok"


def test_the_systemd_unit_verifies_with_the_built_executable(exe: Path, tmp_path: Path) -> None:
    """deploy/meshcall.service as systemd reads it (systemd-analyze verify), with ExecStart
    pointing at this build instead of /usr/local/bin/meshcall."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian package systemd)"
    unit = (ROOT / "deploy" / "meshcall.service").read_text()
    assert unit.count("ExecStart=/usr/local/bin/meshcall --data-dir /var/lib/meshcall\n") == 1
    (tmp_path / "meshcall.service").write_text(unit.replace("ExecStart=/usr/local/bin/meshcall ",
                                                            f"ExecStart={exe} "))
    res = subprocess.run([analyze, "verify", str(tmp_path / "meshcall.service")], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    for line in ("DynamicUser=yes", "StateDirectory=meshcall", "Restart=on-failure", "KillMode=mixed",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes", "ProtectSystem=strict"):
        assert f"\n{line}\n" in unit, line
