"""The CA and the server certificate, checked the way a client would: a real TLS
handshake with the generated CA as the only trust anchor."""

import ipaddress
import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshcall import certs

ADDRS = [ipaddress.ip_address(a) for a in ("127.0.0.1", "192.168.1.20", "::1", "fd00::20")]


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def handshake(cert: certs.ServerCertificate, server_name: str, connect_to: str = "127.0.0.1") -> str:
    """Serve one TLS handshake with the leaf; verify it as a client trusting only the CA."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert.cert_file, cert.key_file)
    client_ctx = ssl.create_default_context(cafile=str(cert.ca_file))
    listener = socket.create_server((connect_to, 0))
    port = listener.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with socket.create_connection((connect_to, port), timeout=5) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_name) as tls:
                return tls.recv(2).decode()
    finally:
        t.join(5)
        listener.close()


@pytest.fixture
def made(tmp_path: Path) -> certs.ServerCertificate:
    return certs.ensure_certificates(tmp_path, "meshbox", ADDRS)


def test_tls_handshake_trusting_only_the_ca(made: certs.ServerCertificate) -> None:
    assert handshake(made, "localhost") == "ok"
    assert handshake(made, "127.0.0.1") == "ok"
    assert handshake(made, "meshbox.local") == "ok"


def test_handshake_fails_for_a_name_not_in_the_certificate(made: certs.ServerCertificate) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(made, "example.com")


def test_sans_cover_local_names_and_every_address(made: certs.ServerCertificate) -> None:
    leaf = load(made.cert_file)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "meshbox", "meshbox.local"}
    assert set(san.get_values_for_type(x509.IPAddress)) == set(ADDRS)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert leaf.fingerprint(hashes.SHA256()).hex(":").upper() == made.fingerprint


def test_ca_is_name_constrained_to_local_names_and_private_ranges(made: certs.ServerCertificate) -> None:
    ca = load(made.ca_file)
    ext = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert ext.critical
    permitted = ext.value.permitted_subtrees
    dns = {g.value for g in permitted if isinstance(g, x509.DNSName)}
    nets = {g.value for g in permitted if isinstance(g, x509.IPAddress)}
    assert dns == {"localhost", "local", "meshbox"}
    assert ipaddress.ip_network("192.168.0.0/16") in nets and ipaddress.ip_network("::1/128") in nets
    assert not any(n.overlaps(ipaddress.ip_network("8.8.8.0/24")) for n in nets if n.version == 4)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0


def test_a_leaked_ca_key_cannot_mint_a_trusted_public_name(made: certs.ServerCertificate, tmp_path: Path) -> None:
    """Sign a certificate for a public site with the CA key: a verifying client refuses it."""
    from cryptography.hazmat.primitives import serialization

    ca_cert = load(made.ca_file)
    ca_key = serialization.load_pem_private_key((tmp_path / certs.CA_KEY).read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    evil, evil_key = certs.make_leaf(ca_cert, ca_key, "meshbox", [])
    # Rebuild with a public SAN, bypassing make_leaf's filter, as an attacker would.
    import datetime as dt
    from cryptography.x509.oid import NameOID
    now = dt.datetime.now(dt.timezone.utc)
    bad = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank")]))
           .issuer_name(ca_cert.subject).public_key(evil_key.public_key()).serial_number(1)
           .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("bank.example.com")]), critical=False)
           .sign(ca_key, hashes.SHA256()))
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    (evil_dir / "leaf.pem").write_bytes(bad.public_bytes(serialization.Encoding.PEM)
                                        + ca_cert.public_bytes(serialization.Encoding.PEM))
    (evil_dir / "key.pem").write_bytes(certs._key_pem(evil_key))
    forged = certs.ServerCertificate(evil_dir / "leaf.pem", evil_dir / "key.pem", made.ca_file, "", None)
    with pytest.raises(ssl.SSLCertVerificationError, match="permitted subtree violation"):
        handshake(forged, "bank.example.com")


def test_private_keys_are_0600_and_reused_across_restarts(made: certs.ServerCertificate, tmp_path: Path) -> None:
    for name in (certs.CA_KEY, certs.LEAF_KEY):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    again = certs.ensure_certificates(tmp_path, "meshbox", ADDRS)
    assert again.fingerprint == made.fingerprint and again.ca_fingerprint == made.ca_fingerprint


def test_address_change_reissues_leaf_from_the_same_ca(made: certs.ServerCertificate, tmp_path: Path) -> None:
    moved = certs.ensure_certificates(tmp_path, "meshbox", ADDRS + [ipaddress.ip_address("10.1.2.3")])
    assert moved.fingerprint != made.fingerprint
    assert moved.ca_fingerprint == made.ca_fingerprint
    san = load(moved.cert_file).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.1.2.3") in san.get_values_for_type(x509.IPAddress)
    assert handshake(moved, "localhost") == "ok"


def test_public_interface_address_is_left_out_not_fatal(tmp_path: Path) -> None:
    made = certs.ensure_certificates(tmp_path, "meshbox", [ipaddress.ip_address("8.8.8.8")] + ADDRS)
    san = load(made.cert_file).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("8.8.8.8") not in san.get_values_for_type(x509.IPAddress)
    assert handshake(made, "localhost") == "ok"


def test_user_certificate_checks(made: certs.ServerCertificate, tmp_path: Path) -> None:
    ok = certs.user_certificate(made.cert_file, made.key_file)
    assert ok.ca_file is None and ok.fingerprint == made.fingerprint
    with pytest.raises(certs.CertificateError, match="does not belong"):
        certs.user_certificate(made.cert_file, tmp_path / certs.CA_KEY)
    with pytest.raises(certs.CertificateError, match="not a PEM certificate"):
        certs.user_certificate(made.key_file, made.key_file)
    with pytest.raises(certs.CertificateError, match="No such file"):
        certs.user_certificate(tmp_path / "missing.pem", made.key_file)


def test_announced_names_go_into_the_leaf_and_a_new_one_reissues_it(tmp_path: Path) -> None:
    first = certs.ensure_certificates(tmp_path, "meshbox", ADDRS, ["meshcall.local"])
    leaf = load(first.cert_file)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "meshcall.local" in san.get_values_for_type(x509.DNSName)
    assert certs.leaf_covers(leaf, "meshbox", ADDRS, ["meshcall.local"])
    assert not certs.leaf_covers(leaf, "meshbox", ADDRS, ["meshcall-2.local"])
    again = certs.ensure_certificates(tmp_path, "meshbox", ADDRS, ["meshcall-2.local"])
    assert again.fingerprint != first.fingerprint and again.ca_fingerprint == first.ca_fingerprint
    assert handshake(again, "meshcall-2.local") == "ok"  # within the CA's name constraints (.local)
