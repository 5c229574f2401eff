"""The exporter-toolkit web-config file: TLS, mutual TLS, basic auth, headers and rate limit on /metrics,
over real sockets and real TLS, with certificates made here by trustme; a bad file raises."""

from __future__ import annotations

import base64
import socket
import ssl
import time
import typing

import bcrypt
import pytest
import trustme
from locust_prometheus_exporter import PrometheusExporter
from support.scrape import samples_of, total
from support.web_config import BAD, MTLS, TLS, USERS, Pki, bcrypt_hash, get, write_bad


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def refused(port: int, context: ssl.SSLContext) -> bool:
    """The TLS handshake (or the request right after it, where TLS 1.3 reports a refused client) fails."""
    try:
        get(port, context)
    except (ssl.SSLError, ConnectionError):
        return True
    return False


# --- TLS


def test_https_serves_metrics_and_configured_headers(serve, pki):
    headers = "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"
    port = serve(TLS + headers)
    status, headers, body = get(port, pki.context())
    assert status == 200
    assert headers["X-Frame-Options"] == "deny" and headers["X-Content-Type-Options"] == "nosniff"
    assert ("locust_exporter_http_requests_total", (("code", "200"),)) in samples_of(body.decode())
    # An untrusted certificate is refused by the client: the server really presents the file's certificate.
    other = Pki.make(pki.dir / "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        get(port, other.context())


def counted(port: int, context: ssl.SSLContext | None, metric: str, **labels: str) -> float:
    """A counter of the server's own, scraped."""
    return total(samples_of(get(port, context)[2].decode()), metric, **labels)


def test_plain_http_to_the_tls_port_gets_a_400_that_says_so(serve, pki):
    port = serve(TLS)
    before = counted(port, pki.context(), "locust_exporter_http_requests_total", code="400")
    status, _, body = get(port)
    assert status == 400
    assert b"HTTP request to an HTTPS server" in body
    # The server goes on serving TLS, and counted the refusal.
    assert counted(port, pki.context(), "locust_exporter_http_requests_total", code="400") == before + 1


def test_clients_stalled_before_the_handshake_do_not_delay_a_scrape_and_are_closed(serve, pki):
    port = serve(TLS)
    dropped = "locust_exporter_connections_dropped_total"
    before = counted(port, pki.context(), dropped, reason="head_timeout")
    connected = time.monotonic()
    stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
    try:
        # Answered (within the request's timeout, far below the stalled clients' 10 s).
        status, _, _ = get(port, pki.context(), timeout=5)
        assert status == 200
        # The handshake has the request head's 10 s: then the server closes each of them.
        for s in stalled:
            s.settimeout(20)
            assert s.recv(1) == b""
        closed = time.monotonic() - connected
    finally:
        for s in stalled:
            s.close()
    assert closed > 9, closed  # not before the 10 s (each recv above waits at most 20 s)
    assert counted(port, pki.context(), dropped, reason="head_timeout") == before + 100


def tls_session(port: int, context: ssl.SSLContext) -> tuple[str | None, str]:
    """(TLS version, cipher suite) of a handshake with the server."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.version(), tls.cipher()[0]


def test_versions_and_cipher_suites_are_the_files(serve, pki):
    port = serve(TLS + "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n")
    assert tls_session(port, pki.context()) == ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")
    # Go's names: ChaCha20 without `_SHA256`, and a TLS 1.3 suite, which the list does not restrict.
    suites = "[TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, TLS_AES_128_GCM_SHA256]"
    port = serve(TLS + f"  max_version: TLS12\n  cipher_suites: {suites}\n")
    assert tls_session(port, pki.context()) == ("TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305")
    port = serve(TLS + "  min_version: TLS13\n")
    assert tls_session(port, pki.context())[0] == "TLSv1.3"
    old = pki.context()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    assert refused(port, old)


def test_inline_certificate_key_and_client_ca(serve, pki):
    def block(name: str, path: str) -> str:
        return f"  {name}: |\n" + "".join(f"    {line}\n" for line in (pki.dir / path).read_text().splitlines())

    port = serve(
        "tls_server_config:\n"
        + block("cert", "server.pem")
        + block("key", "server.key")
        + block("client_ca", "ca.pem")
        + "  client_auth_type: RequireAndVerifyClientCert\n"
    )
    assert get(port, pki.context(pki.client))[0] == 200
    assert refused(port, pki.context())


def test_a_rotated_certificate_is_served_without_a_restart(serve, pki):
    port = serve(TLS)
    assert get(port, pki.context())[0] == 200
    # The same file names, a certificate from another CA: the next connection gets it.
    rotated = Pki.make(pki.dir / "rotated")
    for name in ("server.pem", "server.key"):
        (pki.dir / name).write_bytes((rotated.dir / name).read_bytes())
    assert get(port, rotated.context())[0] == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        get(port, pki.context())


# --- mutual TLS


def test_mtls_requires_a_client_certificate_from_the_ca(serve, pki):
    port = serve(MTLS.format(auth="RequireAndVerifyClientCert"))
    assert get(port, pki.context(pki.client))[0] == 200
    assert refused(port, pki.context())
    stranger = trustme.CA().issue_cert("scraper.example")
    assert refused(port, pki.context(stranger))


def test_verify_client_cert_if_given_accepts_none_but_not_a_stranger(serve, pki):
    port = serve(MTLS.format(auth="VerifyClientCertIfGiven"))
    assert get(port, pki.context())[0] == 200
    assert get(port, pki.context(pki.client))[0] == 200
    assert refused(port, pki.context(trustme.CA().issue_cert("scraper.example")))


def test_require_any_client_cert_takes_any_certificate_but_needs_one(serve, pki):
    port = serve(TLS + "  client_auth_type: RequireAnyClientCert\n")
    assert get(port, pki.context(trustme.CA().issue_cert("anyone.example")))[0] == 200
    assert refused(port, pki.context())


def test_client_allowed_sans_restrict_verified_clients(serve, pki):
    allowed = MTLS.format(auth="RequireAndVerifyClientCert") + "  client_allowed_sans: [scraper.example]\n"
    port = serve(allowed)
    assert get(port, pki.context(pki.client))[0] == 200
    assert refused(port, pki.context(pki.ca.issue_cert("intruder.example")))


# --- basic auth


@pytest.mark.parametrize("tls", [True, False], ids=["https", "http"])
def test_basic_auth_accepts_users_and_refuses_everyone_else(serve, pki, tls):
    port = serve((TLS if tls else "") + USERS.format(alice=bcrypt_hash("wonderland"), bob=bcrypt_hash("builder")))
    context = pki.context() if tls else None
    assert get(port, context, basic("alice", "wonderland"))[0] == 200
    assert get(port, context, basic("bob", "builder"))[0] == 200
    for headers in (None, basic("alice", "builder"), basic("carol", "wonderland"), {"Authorization": "Bearer x"}):
        status, got, _ = get(port, context, headers)
        assert status == 401, headers
        assert got["WWW-Authenticate"] == 'Basic realm="locust-prometheus-exporter"'
    # Every path is behind it.
    assert get(port, context, path="/")[0] == 401


def test_fifty_authenticated_scrapes_pay_bcrypt_once(serve, pki):
    """Cost 10, as documented: only the first check pays bcrypt; each scrape opens its own TLS connection."""
    port = serve(TLS + USERS.format(alice=bcrypt_hash("wonderland", 10), bob=bcrypt_hash("builder")))
    context, headers = pki.context(), basic("alice", "wonderland")
    started = time.monotonic()
    statuses = [get(port, context, headers)[0] for _ in range(50)]
    elapsed = time.monotonic() - started
    assert statuses == [200] * 50
    # Paying bcrypt each time would take 50 checks: the 50 scrapes take less than 25 (measured here, at cost 10).
    hashed = bcrypt_hash("wonderland", 10).encode()
    started = time.monotonic()
    bcrypt.checkpw(b"wonderland", hashed)
    assert elapsed < 25 * (time.monotonic() - started), elapsed


def test_changed_users_take_effect_without_a_restart(serve, pki, tmp_path):
    port = serve(USERS.format(alice=bcrypt_hash("wonderland"), bob=bcrypt_hash("builder")))
    assert get(port, None, basic("alice", "wonderland"))[0] == 200
    time.sleep(0.01)  # a new modification time, whatever the file system's granularity below that
    (tmp_path / "web.yml").write_text(USERS.format(alice=bcrypt_hash("looking-glass"), bob=bcrypt_hash("builder")))
    assert get(port, None, basic("alice", "wonderland"))[0] == 401
    assert get(port, None, basic("alice", "looking-glass"))[0] == 200


def test_rate_limit_answers_429_beyond_the_burst(serve):
    port = serve("rate_limit:\n  interval: 1m\n  burst: 2\n")
    assert [get(port)[0] for _ in range(3)] == [200, 200, 429]


def test_serve_takes_a_path_object_as_the_constructor_does(registry, pki):
    web_config = typing.get_type_hints(PrometheusExporter.__init__)["web_config"]
    assert typing.get_type_hints(PrometheusExporter.serve)["web_config"] == web_config
    (pki.dir / "web.yml").write_text(TLS)
    e = PrometheusExporter("127.0.0.1", 0, registry=registry)
    try:
        e.serve(web_config=pki.dir / "web.yml")
        assert e.url is not None and e.url.startswith("https://")
        assert e.address is not None
        assert get(e.address[1], pki.context())[0] == 200
    finally:
        e.close()


# --- bad files


@pytest.mark.parametrize("case", BAD)
def test_a_bad_file_raises_with_the_file_and_the_problem(registry, pki, case):
    path, error, words = write_bad(pki, case)
    with pytest.raises(error) as raised:
        PrometheusExporter("127.0.0.1", 0, registry=registry, web_config=path).serve()
    message = raised.value.strerror if isinstance(raised.value, OSError) else str(raised.value)
    assert message.startswith(f"web config {path}: "), message
    assert words in message
