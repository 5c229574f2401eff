"""The exporter-toolkit web-config file: TLS, mutual TLS, basic auth, headers and rate limit on /metrics,
over real sockets and real TLS, with certificates made here by trustme; a bad file stops Locust at init."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import trustme
from conftest import EXAMPLES, free_port, locust_cmd, samples_of, total
from locust_prometheus_exporter import PrometheusExporter, _native
from prometheus_server import PrometheusServer, prometheus  # noqa: F401  (fixture)

EXAMPLE_PLAIN = EXAMPLES / "locustfile.py"
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


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.make(tmp_path)


TLS = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


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


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[str], int]]:
    """``serve(yaml)``: a server on 127.0.0.1 with that web config (written to tmp_path/web.yml); its port."""
    servers: list[_native.Server] = []

    def start(text: str) -> int:
        (tmp_path / "web.yml").write_text(text)
        server = _native.Server("127.0.0.1", 0, str(tmp_path / "web.yml"))
        servers.append(server)
        return server.port

    yield start
    for server in servers:
        server.close()


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
    """A counter of the server's own, scraped (the registry is the process's: other tests count too)."""
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
        started = time.monotonic()
        status, _, _ = get(port, pki.context())
        elapsed = time.monotonic() - started
        assert status == 200
        assert elapsed < 2, elapsed
        # The handshake has the request head's 10 s: then the server closes each of them.
        for s in stalled:
            s.settimeout(20)
            assert s.recv(1) == b""
        closed = time.monotonic() - connected
    finally:
        for s in stalled:
            s.close()
    assert 9 < closed < 14, closed
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

MTLS = TLS + "  client_auth_type: {auth}\n  client_ca_file: ca.pem\n"


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

USERS = "basic_auth_users:\n  alice: {alice}\n  bob: {bob}\n"


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


def test_fifty_authenticated_scrapes_take_under_three_seconds(serve, pki):
    """Cost 10, as documented: only the first check pays bcrypt; each scrape opens its own TLS connection."""
    port = serve(TLS + USERS.format(alice=bcrypt_hash("wonderland", 10), bob=bcrypt_hash("builder")))
    context, headers = pki.context(), basic("alice", "wonderland")
    started = time.monotonic()
    statuses = [get(port, context, headers)[0] for _ in range(50)]
    elapsed = time.monotonic() - started
    assert statuses == [200] * 50
    assert elapsed < 3, elapsed


def test_changed_users_take_effect_without_a_restart(serve, pki, tmp_path):
    port = serve(USERS.format(alice=bcrypt_hash("wonderland"), bob=bcrypt_hash("builder")))
    assert get(port, None, basic("alice", "wonderland"))[0] == 200
    time.sleep(0.01)  # a new modification time, whatever the file system's granularity below that
    (tmp_path / "web.yml").write_text(USERS.format(alice=bcrypt_hash("looking-glass"), bob=bcrypt_hash("builder")))
    assert get(port, None, basic("alice", "wonderland"))[0] == 401
    assert get(port, None, basic("alice", "looking-glass"))[0] == 200


def test_workers_ignore_the_option(run_locust, tmp_path):
    """A worker given a file that does not exist runs its part of the test: only the master reads it."""
    missing = str(tmp_path / "nowhere.yml")
    run = run_locust(EXAMPLE_PLAIN, users=2, rate=2, run_time=3, workers=1,
                     worker_args=("--prometheus-web-config", missing))  # fmt: skip
    run.wait_stopped()
    assert total(run.scrape(), "locust_users_total") == 2
    assert run.finish() == [0, 0], run.output()
    assert "web config" not in run.output()


def test_rate_limit_answers_429_beyond_the_burst(serve):
    port = serve("rate_limit:\n  interval: 1m\n  burst: 2\n")
    assert [get(port)[0] for _ in range(3)] == [200, 200, 429]


# --- bad files

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


@pytest.mark.parametrize("case", BAD)
def test_a_bad_file_raises_with_the_file_and_the_problem(pki, case):
    path, error, words = write_bad(pki, case)
    with pytest.raises(error) as raised:
        PrometheusExporter("127.0.0.1", 0, web_config=path).serve()
    message = raised.value.strerror if isinstance(raised.value, OSError) else str(raised.value)
    assert message.startswith(f"web config {path}: "), message
    assert words in message


@pytest.mark.parametrize("case", ["missing-file", "bad-yaml", "unknown-key", "missing-cert", "cert-not-pem",
                                  "key-mismatch", "unknown-client-auth", "not-bcrypt"])  # fmt: skip
def test_a_bad_file_stops_locust_at_init_with_one_line(pki, case, target):
    path, _, words = write_bad(pki, case)
    cmd = locust_cmd(EXAMPLE_PLAIN, "--headless", "-u", "1", "-t", "5s", "-H", target, "--prometheus-host", "127.0.0.1",
                     "--prometheus-port", "0", "--prometheus-web-config", str(path))  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=pki.dir)
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if "web config" in line]
    assert len(lines) == 1 and f"web config {path}: " in lines[0] and words in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("source", ["environment", "locust.conf"])
def test_the_option_is_read_from_the_environment_and_locust_conf(pki, source, target):
    path, _, _ = write_bad(pki, "not-bcrypt")
    cmd = locust_cmd(EXAMPLE_PLAIN, "--headless", "-u", "1", "-t", "5s", "-H", target, "--prometheus-host", "127.0.0.1",
                     "--prometheus-port", "0")  # fmt: skip
    env = dict(os.environ)
    if source == "environment":
        env["LOCUST_PROMETHEUS_WEB_CONFIG"] = str(path)
    else:
        (pki.dir / "locust.conf").write_text(f"prometheus-web-config = {path}\n")
        cmd += ["--config", str(pki.dir / "locust.conf")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=pki.dir, env=env)
    assert r.returncode == 1 and f"web config {path}: " in r.stderr, r.stderr


# --- a real Prometheus, over HTTPS with basic auth, and over mutual TLS


def https_prometheus(prom: PrometheusServer, **job: object) -> PrometheusServer:
    """The running Prometheus's job, made the README's HTTPS scrape job (SIGHUP reloads its file)."""
    config_file = Path(re.search(r"--config.file=(\S+)", " ".join(prom.proc.args)).group(1))
    config = json.loads(config_file.read_text())
    [scrape_job] = config["scrape_configs"]
    scrape_job.update(scheme="https", **job)
    config_file.write_text(json.dumps(config))
    prom.proc.send_signal(signal.SIGHUP)
    https = f"https://{prom.target}/metrics"
    prom.wait_until(lambda: [t["scrapeUrl"] for t in prom.targets()] == [https], 30, "the HTTPS scrape job")
    return prom


def test_prometheus_scrapes_over_mutual_tls(serve, prometheus, pki):  # noqa: F811
    port = serve(MTLS.format(auth="RequireAndVerifyClientCert"))
    tls_config = {"ca_file": "ca.pem", "cert_file": "client.crt", "key_file": "client.key"}
    prom = https_prometheus(prometheus(port), tls_config={k: str(pki.dir / v) for k, v in tls_config.items()})
    prom.wait_until(lambda: prom.query('up{job="locust"} == 1'), 30, "a successful scrape over mutual TLS")
    [target] = prom.targets()
    assert (target["health"], target["lastError"]) == ("up", ""), target
    # Without its certificate, the same Prometheus is refused.
    https_prometheus(prom, tls_config={"ca_file": str(pki.dir / "ca.pem")})
    prom.wait_until(lambda: prom.targets()[0]["lastError"], 30, "a refused scrape")
    prom.wait_until(lambda: prom.query('up{job="locust"} == 0'), 30, "the target down")


def test_prometheus_scrapes_a_locust_run_over_https_with_basic_auth(run_locust, prometheus, pki, tmp_path):  # noqa: F811
    (pki.dir / "web.yml").write_text(TLS + USERS.format(alice=bcrypt_hash("wonderland", 10), bob=bcrypt_hash("x")))
    (tmp_path / "password").write_text("wonderland\n")
    port = free_port()
    prom = https_prometheus(prometheus(port), tls_config={"ca_file": str(pki.dir / "ca.pem")},
                            basic_auth={"username": "alice", "password_file": str(tmp_path / "password")})  # fmt: skip
    https = f"https://127.0.0.1:{port}/metrics"
    options = ("--prometheus-port", str(port), "--prometheus-web-config", str(pki.dir / "web.yml"))
    run = run_locust(EXAMPLE_PLAIN, users=2, rate=2, run_time=10, autoquit=20, extra=options)
    run.wait_until(lambda: https in run.output(), 60, "the exporter to serve HTTPS")
    get_ok = 'locust_requests_total{method="GET", status="200"}'
    prom.wait_until(lambda: prom.query(f"sum({get_ok})"), 60, "requests scraped over HTTPS")
    [target] = prom.targets()
    assert (target["health"], target["lastError"]) == ("up", ""), target
    assert prom.value('up{job="locust"}') == 1
    # The README's queries answer.
    rate = f"sum(rate({get_ok}[5m]))"
    prom.wait_until(lambda: any(float(r["value"][1]) > 0 for r in prom.query(rate)), 30, "a request rate")
    p95 = (
        'histogram_quantile(0.95, sum(rate(locust_request_duration_seconds_bucket{name="/about/"}[5m])) by (le, name))'
    )
    prom.wait_until(lambda: prom.query(p95), 30, "the p95 query to answer")
    # Without the password, the same endpoint refuses.
    assert get(port, pki.context())[0] == 401
    run.kill()
