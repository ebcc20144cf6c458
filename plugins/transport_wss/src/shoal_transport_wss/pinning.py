"""The relay's TLS identity: a self-signed certificate, pinned by its SHA-256.

No public CA is involved. The server (or relay) creates a certificate in its
state directory on first start; the coordination server hands every node the
certificate's fingerprint inside the relay grant, over the Noise-authenticated
control channel. After the TLS handshake the node compares the certificate it
was shown with that fingerprint and refuses the connection, before sending
anything of value, when they differ (a TLS-intercepting proxy, a wrong host).

A fingerprint is written ``sha256:<64 lowercase hex digits>`` (colons between
the hex pairs, as ``openssl x509 -fingerprint -sha256`` prints, are accepted).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shoal.errors import ShoalError

CERT_LIFETIME = datetime.timedelta(days=3650)
_HEX64 = re.compile(r"[0-9a-f]{64}")


class PinMismatch(ShoalError):
    """The relay showed a certificate other than the one the server pinned."""


def fingerprint(der: bytes) -> str:
    return "sha256:" + hashlib.sha256(der).hexdigest()


def normalize(text: str) -> str:
    """``sha256:<hex>`` from the accepted spellings; ValueError otherwise."""
    t = text.strip().lower()
    t = t.removeprefix("sha256:")
    t = t.replace(":", "")
    if not _HEX64.fullmatch(t):
        raise ValueError("a fingerprint is 'sha256:' followed by 64 hex digits")
    return "sha256:" + t


def check(der: bytes | None, pinned: str, where: str) -> None:
    """Raise ``PinMismatch`` (one readable line) unless ``der`` has the pinned fingerprint."""
    if der is None:
        raise PinMismatch(f"wss relay {where} showed no certificate; refusing it")
    got = fingerprint(der)
    if got != normalize(pinned):
        raise PinMismatch(
            f"wss relay {where} presented certificate {got[:23]}..., but the coordination "
            f"server pinned {normalize(pinned)[:23]}...; refusing the connection (is a proxy "
            "intercepting TLS, or is the relay's certificate not the server's?)")


def ensure_certificate(cert_path: Path, key_path: Path, host: str) -> bytes:
    """The DER certificate at ``cert_path``, creating a self-signed one (and its key) if absent."""
    if not cert_path.exists():
        if key_path.exists():
            raise ShoalError(f"{key_path} exists but {cert_path} does not; remove the key "
                             "to have both created again")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal relay")])
        now = datetime.datetime.now(datetime.UTC)
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            san = x509.DNSName(host or "shoal-relay")
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + CERT_LIFETIME)
                .add_extension(x509.SubjectAlternativeName([san]), critical=False)
                .sign(key, hashes.SHA256()))
        key_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError as e:
        raise ShoalError(f"{cert_path}: not a PEM certificate ({e})") from None
    return cert.public_bytes(serialization.Encoding.DER)


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as e:
        raise ShoalError(f"cannot load the wss certificate {cert_path} / key {key_path}: {e}"
                         ) from None
    return ctx


def client_context() -> ssl.SSLContext:
    """TLS without CA checks: the relay's identity is the pinned fingerprint (``check``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
