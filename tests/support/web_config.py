"""Web-config files for the exporter's server: certificates made by trustme, bcrypt hashes, good and bad files,
and one request over plain HTTP or TLS."""

from __future__ import annotations

import base64
import datetime
import http.client
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

#: Cost 4, the lowest, where the test does not measure bcrypt itself: a check takes about 1 ms.
FAST_COST = 4


def bcrypt_hash(password: str, cost: int = FAST_COST) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


@dataclass
class Pki:
    """A CA, the server's certificate for 127.0.0.1, and a client certificate, as files in `dir`."""

    dir: Path
    ca: trustme.CA
    server: trustme.LeafCert
    client: trustme.LeafCert

    @classmethod
    def make(cls, dir: Path, client_name: str = "scraper.example") -> Pki:
        dir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        pki = cls(dir, ca, ca.issue_cert("127.0.0.1", "localhost"), ca.issue_cert(client_name))
        ca.cert_pem.write_to_path(dir / "ca.pem")
        pki.server.private_key_pem.write_to_path(dir / "server.key")
        with open(dir / "server.pem", "wb") as f:
            for blob in pki.server.cert_chain_pems:
                f.write(blob.bytes())
        pki.client.cert_chain_pems[0].write_to_path(dir / "client.crt")
        pki.client.private_key_pem.write_to_path(dir / "client.key")
        return pki

    def context(self, client: trustme.LeafCert | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        if client is not None:
            client.configure_cert(ctx)
        return ctx


TLS = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n"


def get(
    port: int,
    context: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
    path: str = "/metrics",
    timeout: float = 10,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request on a new connection, over TLS when a context is given."""
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


MTLS = TLS + "  client_auth_type: {auth}\n  client_ca_file: ca.pem\n"


USERS = "basic_auth_users:\n  alice: {alice}\n  bob: {bob}\n"


TLS_FILES = "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"


#: A duration far beyond what a computer's clock can count.
HUGE_INTERVAL = "99999999999999999999999h"

#: id -> (web.yml, or None for no file; the exception; words of its message). garbage.pem and other.key
#: are made by `write_bad`.
BAD = {
    "missing-file": (None, OSError, "cannot read the file"),
    "unreadable-file": ("", OSError, "cannot read the file"),
    "bad-yaml": ("tls_server_config:\n  cert_file: 'unterminated\n", ValueError, "quoted scalar"),
    "unknown-key": ("tls_server_config:\n  certfile: server.pem\n", ValueError, "unknown field `certfile`"),
    "unknown-section": ("web_server_config: {}\n", ValueError, "unknown field `web_server_config`"),
    "missing-cert": ("tls_server_config:\n  key_file: server.key\n", ValueError, "cert_file and key_file"),
    "missing-key": ("tls_server_config:\n  cert_file: server.pem\n", ValueError, "cert_file and key_file"),
    "missing-cert-file": (TLS_FILES.format(cert="nowhere.pem", key="server.key"), OSError, "cannot read cert_file"),
    "cert-not-pem": (TLS_FILES.format(cert="garbage.pem", key="server.key"), ValueError, "does not parse"),
    "key-not-pem": (TLS_FILES.format(cert="server.pem", key="garbage.pem"), ValueError, "no private key"),
    "key-mismatch": (TLS_FILES.format(cert="server.pem", key="other.key"), ValueError, "does not match"),
    "cert-and-cert-file": (TLS + "  cert: x\n", ValueError, "cert and cert_file are both set"),
    "unknown-client-auth": (TLS + "  client_auth_type: Always\n", ValueError, 'client_auth_type "Always"'),
    "verify-without-ca": (TLS + "  client_auth_type: RequireAndVerifyClientCert\n", ValueError, "client_ca_file"),
    "not-bcrypt": ("basic_auth_users:\n  alice: wonderland\n", ValueError, "not a bcrypt hash"),
    "tls10": (TLS + "  min_version: TLS10\n", ValueError, "TLS10 is not supported"),
    "cipher": (TLS + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", ValueError, "not supported by rustls"),
    "curve": (TLS + "  curve_preferences: [CurveP521]\n", ValueError, "not supported by rustls"),
    "header": ("http_server_config:\n  headers:\n    Server: x\n", ValueError, "cannot be set"),
    "huge-interval": (f"rate_limit:\n  interval: {HUGE_INTERVAL}\n  burst: 1\n", ValueError, "out of range"),
}


def write_bad(pki: Pki, case: str) -> tuple[Path, type[Exception], str]:
    text, error, words = BAD[case]
    (pki.dir / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
    Pki.make(pki.dir / "other").server.private_key_pem.write_to_path(pki.dir / "other.key")
    path = pki.dir / "web.yml"
    if case == "unreadable-file":
        path.mkdir()  # a directory: unreadable as a file, for root too
    elif text is not None:
        path.write_text(text)
    return path, error, words


def replace(path: Path, text: str) -> None:
    """Writes `path` whole at once (a new file renamed over it), as editors and config management do: a reload
    never reads it half-written."""
    new = path.with_name(path.name + ".new")
    new.write_text(text)
    os.replace(new, path)


def within(seconds: float, predicate: Callable[[], bool], what: str) -> float:
    """Polls `predicate` until it is true, failing after `seconds`; returns how long it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def issue_with_uri(ca: trustme.CA, uri: str) -> trustme.LeafCert:
    """A client certificate from `ca` whose only SAN is the URI `uri` (trustme issues DNS, IP and e-mail SANs)."""
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "uri client")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return trustme.LeafCert(key_pem, cert.public_bytes(serialization.Encoding.PEM), [ca.cert_pem.bytes()])


def basic(user: str, password: str) -> dict[str, str]:
    """The Authorization header of basic auth."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def refused(port: int, context: ssl.SSLContext) -> bool:
    """The TLS handshake (or the request right after it, where TLS 1.3 reports a refused client) fails."""
    try:
        get(port, context)
    except (ssl.SSLError, ConnectionError):
        return True
    return False
