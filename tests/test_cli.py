"""The real command line, started as a subprocess, as an admin would."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers.procs import Meshcall, NoRedirect, free_ports, get_json, insecure_context
from meshcall import __version__

CLI = [sys.executable, "-m", "meshcall"]


def run_cli(*args: str, timeout: float = 20, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_version_and_help() -> None:
    assert run_cli("--version").stdout.strip() == f"meshcall {__version__}"
    out = run_cli("--help").stdout
    for flag in ("--host", "--port", "--http-port", "--data-dir", "--cert", "--key", "--max-peers",
                 "--log-level", "--turn-port", "--no-turn", "--relay-only", "MESHCALL_PORT"):
        assert flag in out


@pytest.mark.parametrize("args,message,code", [
    (["--bogus"], "unrecognized arguments: --bogus", 2),
    (["--port", "x"], "--port: invalid literal", 2),
    (["--cert", "a.pem"], "--cert needs --key too", 2),
])
def test_bad_flags_give_one_line_and_nonzero_exit(args: list[str], message: str, code: int) -> None:
    res = run_cli(*args)
    assert res.returncode == code
    assert message in res.stderr and "Traceback" not in res.stderr


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run_cli("--host", "127.0.0.1", "--port", str(port), "--http-port", "0", "--no-turn",
                      "--data-dir", str(tmp_path / "d"))
    assert res.returncode == 1
    assert f"HTTPS port {port} on 127.0.0.1 is already in use" in res.stderr
    assert "(another meshcall? choose another with --port)" in res.stderr
    errors = [line for line in res.stderr.splitlines() if "error" in line.lower()]
    assert "Traceback" not in res.stderr and len(errors) == 1


def test_unusable_data_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = run_cli("--host", "127.0.0.1", "--port", "0", "--http-port", "0", "--no-turn",
                  "--data-dir", str(blocker / "data"))
    assert res.returncode == 1 and "data dir" in res.stderr and "Traceback" not in res.stderr


def test_only_one_of_cert_and_key_in_environment(tmp_path: Path) -> None:
    res = run_cli("--no-turn", env={"MESHCALL_KEY": str(tmp_path / "k.pem")})
    assert res.returncode == 2 and "--key needs --cert too" in res.stderr


def test_serves_https_with_the_generated_chain_and_reuses_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Meshcall(data_dir=data) as mc:
        log = mc.output()
        assert f"join: https://127.0.0.1:{mc.port}/" in log
        assert "certificate: SHA-256 " in log and f"data dir: {data}" in log
        assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
        # A client that trusts only this installation's CA accepts the server.
        health = get_json(mc.url + "/healthz", ctx=insecure_context(data / "ca.crt"))
        assert health == {"status": "ok", "version": __version__, "rooms": 0, "peers": 0}
        first = [line for line in log.splitlines() if "certificate: SHA-256" in line][0].split("SHA-256 ")[1]
        der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", mc.port)))
        import hashlib
        assert hashlib.sha256(der).hexdigest() == first.replace(":", "").lower()
        code, took = mc.terminate()
        assert code == 0 and took < 2
    with Meshcall(data_dir=data) as again:
        assert f"certificate: SHA-256 {first}" in again.output()


def test_onboarding_port_serves_ca_and_redirects(tmp_path: Path) -> None:
    with Meshcall() as mc:
        base = f"http://127.0.0.1:{mc.http_port}"
        with urllib.request.urlopen(base + "/", timeout=5) as page:
            html = page.read().decode()
            assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
        for needle in ("/meshcall-ca.crt", "Android", "Certificate Trust Settings", "Windows", "macOS",
                       "Firefox", f"https://127.0.0.1:{mc.port}/"):
            assert needle in html
        with urllib.request.urlopen(base + "/meshcall-ca.crt", timeout=5) as ca:
            assert ca.headers["Content-Type"] == "application/x-x509-ca-cert"
            assert ca.read() == (mc.data_dir / "ca.crt").read_bytes()
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as err:
            opener.open(base + "/r/team?name=Ada", timeout=5)
        assert err.value.code == 307
        assert err.value.headers["Location"] == f"https://127.0.0.1:{mc.port}/r/team?name=Ada"
        err.value.close()


def test_bring_your_own_certificate(tmp_path: Path) -> None:
    with Meshcall(data_dir=tmp_path / "made") as made:
        made.terminate()
    chain, key = tmp_path / "made" / "server.crt", tmp_path / "made" / "server.key"
    with Meshcall(["--cert", str(chain), "--key", str(key)], data_dir=tmp_path / "own") as mc:
        get_json(mc.url + "/healthz", ctx=insecure_context(tmp_path / "made" / "ca.crt"))
        assert not (tmp_path / "own" / "ca.key").exists()  # no CA made when one is given


def test_environment_variables_configure_the_server(tmp_path: Path) -> None:
    import asyncio
    import json

    from tornado import httpclient, websocket

    async def max_peers(url: str) -> int:
        conn = await websocket.websocket_connect(httpclient.HTTPRequest(url, validate_cert=False))
        await conn.write_message(json.dumps({"type": "join", "room": "env", "name": "Ada"}))
        welcome = json.loads(await conn.read_message())
        conn.close()
        return int(welcome["maxPeers"])

    mc = Meshcall(data_dir=tmp_path / "d")
    mc.env.update({"MESHCALL_HOST": "127.0.0.1", "MESHCALL_PORT": str(mc.port), "MESHCALL_HTTP_PORT": "0",
                   "MESHCALL_NO_TURN": "1", "MESHCALL_DATA_DIR": str(tmp_path / "d"), "MESHCALL_MAX_PEERS": "2"})
    mc.args = []  # everything from the environment
    with mc:
        assert asyncio.run(max_peers(f"wss://127.0.0.1:{mc.port}/ws")) == 2
        code, _ = mc.terminate()
        out = mc.output()
    assert code == 0 and f"join: https://127.0.0.1:{mc.port}/" in out
    assert (tmp_path / "d" / "ca.crt").exists()
    assert "TURN: " not in out


def test_sigterm_tells_connected_pages_and_exits_within_two_seconds() -> None:
    import asyncio
    import json

    from tornado import httpclient, websocket

    async def scenario(mc: Meshcall) -> tuple[list[dict], int | None, int, float]:
        req = httpclient.HTTPRequest(f"wss://127.0.0.1:{mc.port}/ws", validate_cert=False)
        conns = [await websocket.websocket_connect(req) for _ in range(2)]
        for i, conn in enumerate(conns):
            await conn.write_message(json.dumps({"type": "join", "room": "bye", "name": f"n{i}"}))
            assert json.loads(await conn.read_message())["type"] == "welcome"
        assert json.loads(await conns[0].read_message())["type"] == "peer-joined"
        loop = asyncio.get_running_loop()
        exit_code_and_time = loop.run_in_executor(None, mc.terminate)
        frames = []
        for conn in conns:
            while (raw := await asyncio.wait_for(conn.read_message(), 5)) is not None:
                frames.append(json.loads(raw))
        code, took = await exit_code_and_time
        for conn in conns:
            conn.close()
        return frames, conns[0].close_code, code, took

    with Meshcall() as mc:
        frames, close_code, code, took = asyncio.run(scenario(mc))
        assert [f["type"] for f in frames] == ["shutdown", "shutdown"]
        assert close_code == 1001 and code == 0 and took < 2
        assert "shutdown: told 2 page(s)" in mc.output()


def test_join_answer_carries_the_built_in_turn_with_rest_credentials(tmp_path: Path) -> None:
    import asyncio
    import json
    import time as _time

    from tornado import httpclient, websocket

    from meshcall.turn.credentials import rest_password

    async def welcome(mc: Meshcall) -> dict:
        req = httpclient.HTTPRequest(f"wss://127.0.0.1:{mc.port}/ws", validate_cert=False)
        conn = await websocket.websocket_connect(req)
        await conn.write_message(json.dumps({"type": "join", "room": "turn", "name": "t"}))
        msg = json.loads(await conn.read_message())
        conn.close()
        return msg

    data = tmp_path / "data"
    with Meshcall(["--relay-only"], data_dir=data, turn=True) as mc:
        w = asyncio.run(welcome(mc))
        secret_file = data / "turn-secret"
        assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
        secret = secret_file.read_bytes().strip()
    stun, turn = w["iceServers"]
    assert stun == {"urls": [f"stun:127.0.0.1:{mc.turn_port}"]}
    assert turn["urls"] == [f"turn:127.0.0.1:{mc.turn_port}?transport=udp",
                            f"turn:127.0.0.1:{mc.turn_port}?transport=tcp"]
    expiry, peer = turn["username"].split(":")
    assert peer == w["id"] and 0 < int(expiry) - _time.time() <= 24 * 3600
    assert turn["credential"] == rest_password(secret, turn["username"])
    assert w["iceTransportPolicy"] == "relay"
    with Meshcall(data_dir=data, turn=True):
        assert secret_file.read_bytes().strip() == secret  # kept across restarts


def test_scripts_run_passes_arguments_to_the_installed_command() -> None:
    from helpers.procs import ROOT

    res = subprocess.run([str(ROOT / "scripts" / "run"), "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"meshcall {__version__}"


def test_turn_port_in_use_is_one_line(tmp_path: Path) -> None:
    port, turn_port = free_ports(2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", turn_port))
        res = run_cli("--host", "127.0.0.1", "--port", str(port), "--http-port", "0",
                      "--turn-port", str(turn_port), "--data-dir", str(tmp_path / "d"))
    assert res.returncode == 1
    assert f"TURN port {turn_port}" in res.stderr and "--turn-port" in res.stderr
    assert "Traceback" not in res.stderr


def test_sigterm_the_moment_it_first_answers_still_stops_cleanly() -> None:
    # The server answers HTTPS while the rest of start-up (TURN and its self-check, the
    # collector) finishes: a SIGTERM in that window must still end in a clean stop.
    for _ in range(3):
        with Meshcall(turn=True) as mc:  # start() returns at the first /healthz answer
            code, took = mc.terminate()
            assert code == 0 and took < 2, mc.output()
