"""A certificate authority of this installation and the server certificate it signs.

Browsers allow camera and microphone only on secure origins, and an offline LAN has no
public CA. So each installation makes its own CA once. It is name-constrained to local
names and private address ranges (RFC 5280 §4.2.1.10): were its key to leak, it could not
mint a certificate a browser accepts for a public site. The leaf is reissued by the same
CA when the machine's addresses change, so devices that trusted the CA keep working."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .netinfo import IPAddress, address_order

log = logging.getLogger(__name__)

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
LEAF_CERT = "server.crt"
LEAF_KEY = "server.key"

CA_DAYS = 3650
# Browsers cap trusted leaf lifetimes (398 days for public CAs); stay under it and
# reissue automatically well before the end.
LEAF_DAYS = 390
RENEW_BEFORE = dt.timedelta(days=30)

# Where the CA may vouch: private, loopback, link-local and unique-local ranges only.
PERMITTED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
        "100.64.0.0/10", "198.18.0.0/15", "::1/128", "fc00::/7", "fe80::/10",
    )
)


class CertificateError(Exception):
    """A certificate or key the user gave cannot be used; the message says why."""


@dataclass(frozen=True)
class ServerCertificate:
    cert_file: Path
    key_file: Path
    ca_file: Path | None  # None when the user brought their own certificate
    fingerprint: str  # SHA-256 of the leaf, AA:BB:... form
    ca_fingerprint: str | None


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret with mode 0600 from the first byte (no window where it is readable)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)  # umask-proof; chmod is a no-op on Windows beyond read-only
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def local_dns_names(host: str, extra: Iterable[str] = ()) -> list[str]:
    """The leaf's DNS names: the machine's own, and the extra .local names announced by
    mDNS (an alias such as meshcall.local)."""
    names = ["localhost", host, f"{host}.local", *extra]
    return list(dict.fromkeys(n for n in names if n))


def make_ca(host: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshcall"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"meshcall local CA ({host})"),
    ])
    permitted: list[x509.GeneralName] = [x509.DNSName(n) for n in ("localhost", "local", host)]
    permitted += [x509.IPAddress(net) for net in PERMITTED_NETWORKS]
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def allowed_by_constraints(addr: IPAddress) -> bool:
    """Whether the CA may vouch for this address (public addresses are outside its ranges)."""
    return any(addr.version == net.version and addr in net for net in PERMITTED_NETWORKS)


def make_leaf(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, host: str,
              addresses: Iterable[IPAddress],
              names: Iterable[str] = ()) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    # A public address on an interface cannot go in: the CA's name constraints forbid
    # it, and a browser would reject the whole certificate.
    ips = sorted({a for a in addresses if allowed_by_constraints(a)}, key=address_order)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in local_dns_names(host, names)]
    sans += [x509.IPAddress(a) for a in ips]
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def leaf_covers(cert: x509.Certificate, host: str, addresses: Iterable[IPAddress],
                names: Iterable[str] = ()) -> bool:
    """True when the leaf names everything it should now and is not near its end."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ip = set(san.get_values_for_type(x509.IPAddress))
    want_ip = {a for a in addresses if allowed_by_constraints(a)}
    if not set(local_dns_names(host, names)) <= have_dns or not want_ip <= have_ip:
        return False
    return cert.not_valid_after_utc - _now() > RENEW_BEFORE


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate of a PEM file (the leaf of a chain)."""
    return x509.load_pem_x509_certificate(path.read_bytes())


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{path}: not an EC key")
    return key


def ensure_certificates(data_dir: Path, host: str, addresses: Iterable[IPAddress],
                        names: Iterable[str] = ()) -> ServerCertificate:
    """Reuse the CA and leaf in data_dir; make what is missing; reissue a leaf that no
    longer covers this machine's names and addresses."""
    addresses, names = list(addresses), list(names)
    ca_cert_path, ca_key_path = data_dir / CA_CERT, data_dir / CA_KEY
    leaf_cert_path, leaf_key_path = data_dir / LEAF_CERT, data_dir / LEAF_KEY
    if ca_cert_path.exists() and ca_key_path.exists():
        ca_cert, ca_key = load_certificate(ca_cert_path), _load_key(ca_key_path)
    else:
        log.info("certificates: making the certificate authority of this installation in %s", data_dir)
        ca_cert, ca_key = make_ca(host)
        write_private(ca_key_path, _key_pem(ca_key))
        _write_public(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM))
        leaf_cert_path.unlink(missing_ok=True)
    leaf: x509.Certificate | None = None
    if leaf_cert_path.exists() and leaf_key_path.exists():
        leaf = load_certificate(leaf_cert_path)
        if leaf.issuer != ca_cert.subject or not leaf_covers(leaf, host, addresses, names):
            log.info("certificates: this machine's names or addresses changed; reissuing the server certificate")
            leaf = None
    if leaf is None:
        leaf, leaf_key = make_leaf(ca_cert, ca_key, host, addresses, names)
        write_private(leaf_key_path, _key_pem(leaf_key))
        _write_public(leaf_cert_path, leaf.public_bytes(serialization.Encoding.PEM)
                      + ca_cert.public_bytes(serialization.Encoding.PEM))
    return ServerCertificate(leaf_cert_path, leaf_key_path, ca_cert_path, fingerprint(leaf), fingerprint(ca_cert))


def user_certificate(cert_file: Path, key_file: Path) -> ServerCertificate:
    """Check a certificate the user brought: readable, parseable, and key matching."""
    try:
        cert = load_certificate(cert_file)
    except OSError as exc:
        raise CertificateError(f"--cert {cert_file}: {exc.strerror}") from None
    except ValueError:
        raise CertificateError(f"--cert {cert_file}: not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except OSError as exc:
        raise CertificateError(f"--key {key_file}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise CertificateError(f"--key {key_file}: not an unencrypted PEM private key") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise CertificateError(f"--key {key_file} does not belong to --cert {cert_file}")
    return ServerCertificate(cert_file, key_file, None, fingerprint(cert), None)
