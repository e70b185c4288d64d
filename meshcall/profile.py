"""An iOS/iPadOS configuration profile that installs this installation's CA.

iOS does not offer to install a bare .crt from every app, but Safari always hands a
.mobileconfig to Settings. The profile carries one `com.apple.security.root` payload
(Apple's "Certificate Root" payload: the DER certificate in PayloadContent). After
installing it, full trust still has to be switched on by hand under Settings › General ›
About › Certificate Trust Settings: iOS never does that for a downloaded profile."""

from __future__ import annotations

import functools
import plistlib
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

MIME = "application/x-apple-aspen-config"
FILENAME = "meshcall.mobileconfig"
# A fixed namespace: the same CA always gives the same UUIDs, so installing the profile
# again replaces the old one instead of adding a second.
_NAMESPACE = uuid.UUID("6f1c8d2e-3b7a-4c55-9a0e-2d4f8b1e7c30")


@functools.lru_cache(maxsize=4)  # the CA does not change while running: build once, not per download
def mobileconfig(ca_pem: bytes) -> bytes:
    ca = x509.load_pem_x509_certificate(ca_pem)
    der = ca.public_bytes(serialization.Encoding.DER)
    digest = ca.fingerprint(hashes.SHA256()).hex()
    names = ca.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    ca_name = str(names[0].value) if names else "meshcall local CA"
    payload = {
        "PayloadType": "com.apple.security.root",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"local.meshcall.ca.{digest[:16]}",
        "PayloadUUID": str(uuid.uuid5(_NAMESPACE, "ca:" + digest)).upper(),
        "PayloadDisplayName": ca_name,
        "PayloadDescription": "Lets this device open the meshcall meeting page on the local network without a warning.",
        "PayloadCertificateFileName": "meshcall-ca.crt",
        "PayloadContent": der,
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"local.meshcall.profile.{digest[:16]}",
        "PayloadUUID": str(uuid.uuid5(_NAMESPACE, "profile:" + digest)).upper(),
        "PayloadDisplayName": f"meshcall ({ca_name})",
        "PayloadDescription": ("Installs the certificate authority of a meshcall appliance. It can vouch only "
                               "for local names and private network addresses, never for a public website."),
        "PayloadOrganization": "meshcall",
        "PayloadRemovalDisallowed": False,
        "PayloadContent": [payload],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)
