"""A returning device loads the room page from its cache: only the page itself is asked for.

Chromium does not cache anything from a site whose certificate it had to be told to
ignore, so this browser trusts the appliance's certificate by its key instead
(`--ignore-certificate-errors-spki-list`), as a device that installed the CA would."""

from __future__ import annotations

import base64
import hashlib
import ssl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from helpers.browser import chromium
from helpers.procs import Meshcall

pytestmark = [pytest.mark.browser, pytest.mark.netns]


def spki_hash(host: str, port: int) -> str:
    cert = x509.load_pem_x509_certificate(ssl.get_server_certificate((host, port)).encode())
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


RESOURCES = ("performance.getEntriesByType('resource').filter(e => e.name.includes('/static/'))"
             ".map(e => [e.name.replace(/^.*\\/static\\/[0-9a-f]+\\//, ''), e.transferSize])")


def test_a_returning_device_asks_for_no_static_file(server: Meshcall) -> None:
    with chromium([f"--ignore-certificate-errors-spki-list={spki_hash('127.0.0.1', server.port)}"]) as b:
        context = b.new_context()
        page = context.new_page()
        page.goto(server.url + "/r/cache-test")
        page.wait_for_load_state("load")
        first = dict(page.evaluate(RESOURCES))
        assert first.get("js/room.js", 0) > 0 and first.get("app.css", 0) > 0, first  # fetched over the network
        page.goto(server.url + "/")
        page.wait_for_load_state("load")
        page.goto(server.url + "/r/cache-test")
        page.wait_for_load_state("load")
        again = dict(page.evaluate(RESOURCES))
        # transferSize is 0 only for a file taken from the cache without asking the
        # server; a revalidation (304) costs at least its headers.
        assert set(again) == set(first) and all(size == 0 for size in again.values()), again
        context.close()
