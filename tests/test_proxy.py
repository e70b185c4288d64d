"""The reverse-proxy recipe (deploy/nginx-meshcall.conf) with a real nginx in front of a
real `meshcall --proxy`, all on loopback.

nginx runs in the foreground from a config made in a temp dir (its own pid file, logs and
temp paths), with a certificate made here, and is stopped by PID. The recipe file itself
is used: only its ports, certificate paths and IPv6 listens are replaced."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from meshcall.bundle import Bundle
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tornado import httpclient, websocket

from helpers.procs import ROOT, Meshcall, NoRedirect, free_ports

NGINX = Path("/usr/sbin/nginx")
RECIPE = ROOT / "deploy" / "nginx-meshcall.conf"


# -- a certificate "you already have" ---------------------------------------------------

def make_site_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf for localhost/127.0.0.1, like an admin's existing certificate.
    Returns (ca.pem, fullchain.pem, privkey.pem)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, chain_file, key_file = directory / "ca.pem", directory / "fullchain.pem", directory / "privkey.pem"
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    ca_file.write_bytes(ca_pem)
    chain_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + ca_pem)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return ca_file, chain_file, key_file


# -- meshcall --proxy and nginx ----------------------------------------------------------

class ProxiedMeshcall(Meshcall):
    """meshcall --proxy: plain HTTP on --port (it waits for /healthz over http)."""

    def __init__(self, turn: bool = False) -> None:
        super().__init__(["--proxy"], turn=turn)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def recipe_for_test(upstream_port: int, https_port: int, http_port: int, chain: Path, key: Path) -> str:
    text = RECIPE.read_text()
    replacements = {
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "server 127.0.0.1:8443;": f"server 127.0.0.1:{upstream_port};",
        "/etc/ssl/meet.example.org/fullchain.pem": str(chain),
        "/etc/ssl/meet.example.org/privkey.pem": str(key),
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{RECIPE.name}: expected {old!r} exactly once"
        text = text.replace(old, new)
    return text


class Nginx:
    def __init__(self, directory: Path, site: str, port: int) -> None:
        if not NGINX.is_file():
            raise AssertionError(f"{NGINX} is missing: install Debian's nginx-light (./scripts/test does)")
        self.dir, self.port = directory, port
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (directory / sub).mkdir()
        (directory / "site.conf").write_text(site)
        # Root starts the master; workers stay root so they can use this private temp dir.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (directory / "nginx.conf").write_text(f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/site.conf;
}}
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> "Nginx":
        conf = str(self.dir / "nginx.conf")
        check = subprocess.run([str(NGINX), "-t", "-p", str(self.dir), "-c", conf],
                               capture_output=True, text=True, timeout=10)
        assert check.returncode == 0, f"nginx -t refused the recipe:\n{check.stderr}"
        with (self.dir / "stderr.log").open("wb") as stderr:
            self.proc = subprocess.Popen([str(NGINX), "-p", str(self.dir), "-c", conf],
                                         stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nginx did not listen within {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n" + (self.dir / name).read_text(errors="replace")
                         for name in ("stderr.log", "error.log", "access.log") if (self.dir / name).exists())

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # fast shutdown of master and workers
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@contextlib.contextmanager
def proxy_stack(tmp_path: Path, turn: bool = False) -> Iterator[dict[str, Any]]:
    """meshcall --proxy behind Debian's nginx running this repository's recipe."""
    ca, chain, key = make_site_certificate(tmp_path)
    mc = ProxiedMeshcall(turn=turn)
    https_port, http_port = free_ports(2)
    (tmp_path / "nginx").mkdir()
    nginx = Nginx(tmp_path / "nginx", recipe_for_test(mc.port, https_port, http_port, chain, key), https_port)
    try:
        mc.start()
        nginx.start()
        yield {"origin": f"https://127.0.0.1:{https_port}", "http": f"http://127.0.0.1:{http_port}",
               "https_port": https_port, "ca": ca, "mc": mc, "nginx": nginx}
    except BaseException:
        print(mc.output())
        print(nginx.logs())
        raise
    finally:
        nginx.stop()
        mc.close()


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with proxy_stack(tmp_path) as stack:
        yield stack


def trust(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))  # the test CA is the only anchor


async def ws_join(url: str, origin: str, ca: Path, host: str | None = None) -> dict[str, Any]:
    """Open the signaling socket with this Origin, join a room, return the welcome."""
    headers = {"Origin": origin, **({"Host": host} if host else {})}
    req = httpclient.HTTPRequest(url, headers=headers, ssl_options=trust(ca), connect_timeout=5,
                                 request_timeout=5)
    conn = await websocket.websocket_connect(req)
    try:
        await conn.write_message(json.dumps({"type": "join", "room": "proxied-room", "name": "Ada",
                                             "audio": True, "video": True}))
        while True:
            raw = await asyncio.wait_for(conn.read_message(), 5)
            assert raw is not None, "the socket closed before a welcome"
            msg = json.loads(raw)
            if msg["type"] == "welcome":
                return msg
            assert msg["type"] != "error", msg
    finally:
        conn.close()
        await asyncio.sleep(0)  # let the close frame go out before the loop ends


def test_page_and_health_over_nginx_https(proxied: dict[str, Any]) -> None:
    ctx = trust(proxied["ca"])
    with urllib.request.urlopen(proxied["origin"] + "/", context=ctx, timeout=5) as resp:
        assert resp.status == 200
        assert resp.read() == Bundle(ROOT / "assets").page("index.html").body  # the page, versioned asset URLs
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    with urllib.request.urlopen(proxied["origin"] + "/healthz", context=ctx, timeout=5) as resp:
        assert json.loads(resp.read())["status"] == "ok"
    # meshcall itself speaks plain HTTP and runs no onboarding port in --proxy mode.
    log = proxied["mc"].output()
    assert f"join: http://127.0.0.1:{proxied['mc'].port}/" in log and "first time on a device" not in log


def test_plain_http_is_sent_to_https(proxied: dict[str, Any]) -> None:
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(proxied["http"] + "/r/some-room", timeout=5)
    with err.value:
        assert err.value.code == 301
        assert err.value.headers["Location"] == "https://127.0.0.1/r/some-room"


def test_websocket_join_through_nginx_gets_a_welcome(proxied: dict[str, Any]) -> None:
    origin = proxied["origin"]
    url = origin.replace("https://", "wss://") + "/ws"
    welcome = asyncio.run(ws_join(url, origin, proxied["ca"]))
    assert welcome["room"] == "proxied-room" and welcome["id"] and welcome["peers"] == []
    assert "joined" in proxied["mc"].output()


def test_cross_origin_upgrade_through_nginx_is_refused(proxied: dict[str, Any]) -> None:
    origin = proxied["origin"]
    url = origin.replace("https://", "wss://") + "/ws"
    with pytest.raises(httpclient.HTTPClientError) as err:
        asyncio.run(ws_join(url, "https://evil.example", proxied["ca"]))
    assert err.value.code == 403
    assert "joined" not in proxied["mc"].output()


def test_ice_servers_name_the_host_the_browser_used(tmp_path: Path) -> None:
    """Behind the proxy meshcall's socket is nginx's: the STUN/TURN addresses handed to a
    page must come from the Host it asked for, not from the upstream connection."""
    with proxy_stack(tmp_path, turn=True) as stack:
        https_port, mc = stack["https_port"], stack["mc"]
        host = f"localhost:{https_port}"
        welcome = asyncio.run(ws_join(f"wss://127.0.0.1:{https_port}/ws", f"https://{host}", stack["ca"], host=host))
        urls = [u for server in welcome["iceServers"] for u in server["urls"]]
        assert f"stun:localhost:{mc.turn_port}" in urls, urls
        assert all("127.0.0.1" not in u for u in urls), urls


def test_an_oversized_frame_through_nginx_gets_1009_not_a_reset(proxied: dict[str, Any]) -> None:
    async def one() -> int | None:
        req = httpclient.HTTPRequest(proxied["origin"].replace("https", "wss") + "/ws",
                                     headers={"Origin": proxied["origin"]}, ssl_options=trust(proxied["ca"]),
                                     connect_timeout=5, request_timeout=5)
        conn = await websocket.websocket_connect(req)
        try:
            await conn.write_message(json.dumps({"type": "ping", "pad": "x" * 1_000_000}))
            while await asyncio.wait_for(conn.read_message(), 10) is not None:
                pass
            return conn.close_code
        finally:
            conn.close()
            await asyncio.sleep(0)

    # A reset came in most tries before: every try must see the close code.
    assert [asyncio.run(one()) for _ in range(5)] == [1009] * 5
