"""The exporter-toolkit web-config file: TLS, mutual TLS, basic auth, headers and rate limit on /metrics,
over real sockets and real TLS, with certificates made here by trustme; a bad file raises."""

from __future__ import annotations

import base64
import http.client
import os
import socket
import ssl
import subprocess
import sys
import time
import typing
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import pytest
import trustme
from locust_prometheus_exporter import PrometheusExporter, _native
from support.scrape import samples_of, total
from support.web_config import (
    BAD,
    HUGE_INTERVAL,
    MTLS,
    TLS,
    USERS,
    Pki,
    basic,
    bcrypt_hash,
    get,
    issue_with_uri,
    refused,
    replace,
    within,
    write_bad,
)

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


def test_a_rotated_certificate_is_served_within_two_seconds(serve, pki):
    port = serve(TLS)
    assert get(port, pki.context())[0] == 200
    # The same file names, a certificate from another CA, copied in place: the next connections get it.
    rotated = Pki.make(pki.dir / "rotated")
    for name in ("server.pem", "server.key"):
        (pki.dir / name).write_bytes((rotated.dir / name).read_bytes())
    within(2, lambda: not refused(port, rotated.context()), "the rotated certificate served")
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


def test_a_password_rotated_with_cp_p_is_refused_within_two_seconds(serve, tmp_path):
    """`cp -p` (or `rsync -t`) keeps the modification time, and every bcrypt hash has the same length: only
    the content tells the new file from the old."""
    web = tmp_path / "web.yml"
    port = serve(USERS.format(alice=bcrypt_hash("wonderland"), bob=bcrypt_hash("builder")))
    assert get(port, None, basic("alice", "wonderland"))[0] == 200
    before = web.stat()
    rotated = tmp_path / "rotated.yml"
    rotated.write_text(USERS.format(alice=bcrypt_hash("looking-glass"), bob=bcrypt_hash("builder")))
    os.utime(rotated, ns=(before.st_atime_ns, before.st_mtime_ns))
    subprocess.run(["cp", "-p", str(rotated), str(web)], check=True)
    after = web.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    within(2, lambda: get(port, None, basic("alice", "wonderland"))[0] == 401, "the old password refused")
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


# --- a changed file: fail closed


def reloads(port: int, context: ssl.SSLContext | None, headers: dict[str, str]) -> dict[str, float]:
    """`locust_exporter_web_config_reloads_total` by result, scraped."""
    body = get(port, context, headers, path="/metrics?name[]=locust_exporter_web_config_reloads_total")[2]
    return {dict(labels)["result"]: value for (_, labels), value in samples_of(body.decode()).items()}


def test_reloads_that_break_the_file_or_drop_tls_or_auth_fail_closed(serve, pki, tmp_path, capfd):
    """Started with TLS and basic auth: while the file on disk is not a valid config with both, plain HTTP
    and HTTPS without credentials never get a 200, and the right credentials get a 500."""
    users = USERS.format(alice=bcrypt_hash("wonderland"), bob=bcrypt_hash("builder"))
    valid = TLS + users
    broken = {
        "empty": "",
        "bad-yaml": "tls_server_config:\n  cert_file: 'unterminated\n",
        "tls-less": users,
        "auth-less": TLS,
        "huge-interval": valid + f"rate_limit:\n  interval: {HUGE_INTERVAL}\n  burst: 1\n",
    }
    port = serve(valid)
    web, context, right = tmp_path / "web.yml", pki.context(), basic("alice", "wonderland")
    assert get(port, context, right)[0] == 200
    capfd.readouterr()
    for case, text in [*broken.items(), ("empty again", "")]:
        replace(web, text)
        within(2, lambda: get(port, context, right)[0] == 500, f"{case}: 500 for the right credentials")
        assert get(port, context)[0] == 500, case
        assert get(port, context, basic("alice", "builder"))[0] == 500, case
        assert get(port)[0] == 400, case  # plain HTTP, to the port that serves TLS since it started
        replace(web, valid)
        within(2, lambda: get(port, context, right)[0] == 200, f"{case}: the valid file served again")
        assert get(port, context)[0] == 401
    # Each failed reload counted; each distinct error logged once, naming the file and the problem.
    assert reloads(port, context, right) == {"success": len(broken) + 1, "failure": len(broken) + 1}
    logged = [line for line in capfd.readouterr().err.splitlines() if "web config" in line]
    assert len(logged) == len(broken), logged
    assert all(f"web config {web}: " in line for line in logged), logged
    for words in ("empty", "quoted scalar", "tls_server_config", "basic_auth_users", "out of range"):
        assert sum(words in line for line in logged) == 1, (words, logged)


def test_a_plain_http_server_with_basic_auth_fails_closed_too(serve, pki, tmp_path, capfd):
    """Without TLS at start: a file that drops basic auth, or adds TLS (which a running server cannot take up),
    is answered 500 until the file is valid again."""
    users = USERS.format(alice=bcrypt_hash("wonderland"), bob=bcrypt_hash("builder"))
    port = serve(users)
    web, right = tmp_path / "web.yml", basic("alice", "wonderland")
    for case, text in (("empty", ""), ("auth-less", "rate_limit:\n  interval: 1s\n  burst: 9\n"), ("tls", TLS + users)):
        replace(web, text)
        within(2, lambda: get(port, None, right)[0] == 500, f"{case}: 500 for the right credentials")
        assert get(port)[0] == 500, case
        replace(web, users)
        within(2, lambda: get(port, None, right)[0] == 200, f"{case}: the valid file served again")
    logged = capfd.readouterr().err
    assert "the server started without TLS, which takes a restart to turn on" in logged, logged


def test_unusable_tls_material_on_reload_fails_the_handshake(serve, pki):
    """A key that does not match its certificate: no handshake succeeds (not the previous certificate either)."""
    port = serve(TLS + USERS.format(alice=bcrypt_hash("wonderland"), bob=bcrypt_hash("builder")))
    right = basic("alice", "wonderland")
    assert get(port, pki.context(), right)[0] == 200
    good_key = (pki.dir / "server.key").read_bytes()
    Pki.make(pki.dir / "other").server.private_key_pem.write_to_path(pki.dir / "server.key")
    within(2, lambda: refused(port, pki.context()), "the handshake refused")
    assert get(port)[0] == 400
    (pki.dir / "server.key").write_bytes(good_key)
    within(2, lambda: not refused(port, pki.context()), "the handshake with the good key")
    assert get(port, pki.context(), right)[0] == 200


def test_client_allowed_sans_match_exactly(serve, pki):
    """As in the toolkit: each DNS, IP, e-mail and URI SAN of the client certificate compared as a string; a
    wildcard certificate does not stand for the names under it."""
    allowed = "[scraper.example.com, 10.1.2.3, prometheus@example.com, 'spiffe://example.com/prometheus']"
    port = serve(MTLS.format(auth="RequireAndVerifyClientCert") + f"  client_allowed_sans: {allowed}\n")
    for name in ("scraper.example.com", "10.1.2.3", "prometheus@example.com"):
        assert get(port, pki.context(pki.ca.issue_cert(name)))[0] == 200, name
    assert get(port, pki.context(issue_with_uri(pki.ca, "spiffe://example.com/prometheus")))[0] == 200
    for name in ("*.example.com", "other.example.com", "scraper.example.com.evil", "10.1.2.4", "root@example.com"):
        assert refused(port, pki.context(pki.ca.issue_cert(name))), name
    assert refused(port, pki.context(issue_with_uri(pki.ca, "spiffe://example.com/other")))


def test_only_a_metrics_request_answered_200_counts_as_a_scrape(registry, tmp_path):
    (tmp_path / "web.yml").write_text(USERS.format(alice=bcrypt_hash("wonderland"), bob=bcrypt_hash("builder")))
    server = _native.Server(registry, "127.0.0.1", 0, str(tmp_path / "web.yml"))
    try:
        for headers in (None, basic("alice", "builder")):
            assert get(server.port, None, headers)[0] == 401
        assert server.scrapes_seen() == (0, None)
        mark = _native.Server.scrape_mark()
        assert get(server.port, None, basic("alice", "wonderland"))[0] == 200
        assert server.scrapes_seen()[0] == 1
        assert server.wait_for_scrape(mark, 5)
    finally:
        server.close()


# --- a flood of wrong passwords

#: A server of an empty registry in a process of its own, whose threads and memory the test reads.
SERVER = """
import sys
from locust_prometheus_exporter import CollectorRegistry, _native
server = _native.Server(CollectorRegistry(), "127.0.0.1", 0, sys.argv[1])
print(server.port, flush=True)
sys.stdin.read()
"""


def proc_status(pid: int) -> dict[str, int]:
    """Threads and VmRSS (kB) of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {"threads": int(fields["Threads"]), "rss_kb": int(fields["VmRSS"].split()[0])}


def pipelined(port: int, passwords: list[str]) -> list[int]:
    """One connection, one request per password sent at once (pipelined); the statuses of the answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"".join(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n\r\n"
            % base64.b64encode(f"alice:{p}".encode())
            for p in passwords
        ))  # fmt: skip
        answers = s.makefile("rb")
        statuses = []
        for _ in passwords:
            statuses.append(int(answers.readline().split()[1]))
            length = 0
            while (line := answers.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            answers.read(length)
        return statuses


@pytest.mark.timeout(120)
def test_a_flood_of_wrong_passwords_does_not_keep_the_scraper_out(tmp_path):
    """1,000 requests with distinct wrong passwords on 200 connections, against cost-10 hashes (about 70 ms of CPU
    each, one at a time): a scraper with the right password is answered within 2 s throughout, the wrong ones
    get 401 or 503 (past the 5 s wait for a check), and the server's threads and memory stay bounded."""
    (tmp_path / "web.yml").write_text(USERS.format(alice=bcrypt_hash("wonderland", 10), bob=bcrypt_hash("builder", 10)))
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp_path / "web.yml")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        right = basic("alice", "wonderland")
        # As Prometheus scrapes: on one keep-alive connection, once before, then every interval.
        scraper = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def scrape() -> int:
            scraper.request("GET", "/metrics", headers=right)
            answer = scraper.getresponse()
            answer.read()
            return answer.status

        assert scrape() == 200
        before = proc_status(proc.pid)
        with ThreadPoolExecutor(200) as pool:
            flood = [pool.submit(pipelined, port, [f"wrong-{c}-{i}" for i in range(5)]) for c in range(200)]
            time.sleep(1)
            waits, peak = [], before
            for _ in range(5):
                started = time.monotonic()
                status = scrape()
                waits.append(time.monotonic() - started)
                assert status == 200, status
                now = proc_status(proc.pid)
                peak = {k: max(peak[k], now[k]) for k in peak}
                time.sleep(0.5)
            statuses = [s for f in flood for s in f.result()]
    finally:
        proc.kill()
        proc.wait()
    assert max(waits) < 2, waits
    assert len(statuses) == 1000 and set(statuses) <= {401, 503}, sorted(set(statuses))
    # The server's thread and the blocking pool's two (renders and bcrypt checks), whatever the flood.
    assert peak["threads"] <= before["threads"] + 2, (before, peak)
    # 200 connections' buffers and tasks: a few MB; far less than one per request would take.
    assert peak["rss_kb"] - before["rss_kb"] < 32 * 1024, (before, peak)
