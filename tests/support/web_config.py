"""Web-config files for the exporter's server: certificates made by trustme, bcrypt hashes, good and bad files,
and one request over plain HTTP or TLS."""

from __future__ import annotations

import base64
import http.client
import ssl
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import trustme

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
