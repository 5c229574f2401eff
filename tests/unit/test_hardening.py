"""The endpoint under what load generators meet: slow and idle clients, huge or malformed requests, long
keep-alive, IPv6."""

from __future__ import annotations

import collections
import http.client
import random
import re
import resource
import selectors
import socket
import time
from collections.abc import Callable

import bcrypt
import pytest
import trustme
from locust_prometheus_exporter import CollectorRegistry, Histogram, PrometheusExporter, _native
from support.scrape import http_get, samples_of, total
from support.server import delta, os_threads, read_to_close, server_counts, wait_for
from support.web_config import MTLS, TLS, USERS, basic, bcrypt_hash, get, refused

pytestmark = pytest.mark.timeout(120)

HALF_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
#: The server's documented limits (README, "HTTP server limits").
HEAD_TIMEOUT = 10.0
CONNECTIONS = 512


def test_a_thousand_half_sent_requests(port):
    """Slow clients take no thread, do not keep a scrape out, and are closed after the head timeout."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    before = server_counts(port)
    threads = os_threads()
    clients = []
    try:
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(HALF_REQUEST)
            clients.append(s)
        # Answered (within the request's timeout, far below the slow clients' 10 s; its speed is `make bench`'s).
        status, _, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert status == 200 and b"locust_exporter_http_requests_total" in body
        # The server thread and at most two render threads, whatever the number of clients.
        assert os_threads() <= threads + 2
        sel = selectors.DefaultSelector()
        for s in clients:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + HEAD_TIMEOUT + 5
        open_ = len(clients)
        while open_ and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                try:
                    data = key.fileobj.recv(1024)  # type: ignore[union-attr]
                except ConnectionResetError:
                    data = b""
                assert data == b"", "a half-sent request was answered"
                sel.unregister(key.fileobj)
                open_ -= 1
        assert open_ == 0, f"{open_} half-sent requests still open after {HEAD_TIMEOUT + 5} s"
    finally:
        for s in clients:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    counts = delta(server_counts(port), before)
    # Beyond the limit, each newcomer (the scrape too) made room by closing the oldest slow client;
    # the others ran out of time.
    assert counts["reason=limit"] == 1000 - CONNECTIONS + 1
    assert counts["reason=head_timeout"] == CONNECTIONS - 1


def test_oversized_headers_are_refused(port):
    before = server_counts(port)
    huge_line = b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    many_lines = b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(10_000)) + b"\r\n"
    many_small = b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X: %d\r\n" % i for i in range(150)) + b"\r\n"
    for request in (huge_line, many_lines, many_small):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            try:
                s.sendall(request)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused while still sending
            answer = read_to_close(s, timeout=5)
        # The answer may be lost to the reset that closing on unread data causes; it is never a 200.
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:100]
    # Just under the limit is served.
    fits = {"X-Fill": "a" * 15_000}
    assert http_get(f"http://127.0.0.1:{port}/metrics", fits)[0] == 200
    counts = delta(server_counts(port), before)
    assert (counts["code=431"], counts["reason=too_large"]) == (3, 3)


#: Malformed requests, and the status of the answer each gets (None: closed unanswered).
MALFORMED = [
    (b"\r\n\r\n", None),  # blank lines only: no request at all, so nothing is counted either
    (b"GET\r\n\r\n", "400"),
    (b"GET / HTTP/9.9\r\n\r\n", "400"),
    (b"GET / HTTP/1.1\r\nHost\r\n\r\n", "400"),
    (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", "400"),
    (b"GET / HTTP/1.1\r\n: empty\r\n\r\n", "400"),
    (b"G\x00T / HTTP/1.1\r\n\r\n", "400"),
    (b"GET /\x7f HTTP/1.1\r\n\r\n", "400"),
    (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "400"),
    (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "400"),
    (b"POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "405"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", None),  # the HTTP/2 preface: no answer, counted malformed
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)), "400"),  # a TLS ClientHello
]
H2_PREFACE = MALFORMED[-2][0]


def test_malformed_and_random_requests(port):
    """500 requests, each on its own connection then half-closed: each gets the answer its kind gets (random
    bytes, a 400), each is counted by its code and, refused, as `malformed`, and the server goes on answering."""
    rng = random.Random(20261127)
    requests = [MALFORMED[i % len(MALFORMED)] for i in range(100)]
    requests += [(rng.randbytes(rng.randint(1, 3000)), "400") for _ in range(300)]
    # Random bytes in the shape of a request line and headers.
    words = [b"GET", b"HEAD", b"/metrics", b"HTTP/1.1", b"\r\n", b":", b" ", b"\t", b"\x00", b"%", b"?name[]="]
    requests += [
        (b"".join(rng.choice(words) for _ in range(rng.randint(1, 60))) + b"\r\n\r\n", "400") for _ in range(100)
    ]
    first = server_counts(port)
    idle = delta(server_counts(port), first)  # what counting costs: its own scrape
    before = server_counts(port)
    for request, status in requests:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            try:
                s.sendall(request)
                s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = read_to_close(s, timeout=5)
        assert (answer.split(b" ", 2)[1].decode() if answer else None) == status, (request[:80], answer[:80])
    assert http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200
    statuses = collections.Counter(status for _, status in requests)
    preface = sum(request == H2_PREFACE for request, _ in requests)
    assert delta(server_counts(port), before) == {
        "code=200": 1 + idle["code=200"],
        "code=400": statuses["400"],
        "code=405": statuses["405"],
        "reason=malformed": statuses["400"] + preface,
    }


def test_refusals_are_counted_by_code_and_reason(pki, tmp_path):
    """401 (basic auth), 429 (rate limit) and a refused TLS handshake, each in the server's own counters."""
    users = USERS.format(alice=bcrypt_hash("wonderland"), bob=bcrypt_hash("builder"))
    for name, text, request, counter in (
        ("auth", users, lambda port: get(port, None, basic("carol", "x"))[0] == 401, "code=401"),
        ("rate", "rate_limit:\n  interval: 1m\n  burst: 1\n", lambda port: get(port)[0] == 200, "code=429"),
        ("mtls", MTLS.format(auth="RequireAndVerifyClientCert"), lambda port: refused(port, pki.context()),
         "reason=tls_handshake"),
    ):  # fmt: skip
        (pki.dir / f"{name}.yml").write_text(text)
        registry = CollectorRegistry()
        server = _native.Server(registry, "127.0.0.1", 0, str(pki.dir / f"{name}.yml"))
        try:
            assert request(server.port)
            if name == "rate":
                assert get(server.port)[0] == 429  # the burst of 1 is spent
            expected = {counter: 1.0, **({"code=200": 1.0} if name == "rate" else {})}
            wait_for(lambda registry=registry, expected=expected: own_counts(registry) == expected, 5)
        finally:
            server.close()


def test_request_client_cert_takes_any_certificate_or_none(serve, pki):
    port = serve(TLS + "  client_auth_type: RequestClientCert\n")
    for client in (None, pki.client, trustme.CA().issue_cert("stranger.example")):
        assert get(port, pki.context(client))[0] == 200, client


def test_an_unknown_user_costs_a_bcrypt_check(serve):
    """So that the answer's delay does not tell which users exist: at least half of a check at cost 10 (the
    bound is a lower one: a loaded machine only adds to it). Each attempt a new password: a failed check is
    remembered, and its repeat answered at once, for known and unknown users alike."""
    hashed = bcrypt_hash("wonderland", 10)
    port = serve(USERS.format(alice=hashed, bob=bcrypt_hash("builder", 10)))

    def took(call: Callable[[], object]) -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    check = min(took(lambda: bcrypt.checkpw(b"guess", hashed.encode())) for _ in range(3))
    unknown = min(took(lambda i=i: get(port, None, basic("carol", f"guess{i}"))) for i in range(3))
    assert unknown >= check / 2, (unknown, check)


def own_counts(registry: CollectorRegistry) -> dict[str, float]:
    """The server's own counters that are not 0, from `registry` (no request needed)."""
    names = ["locust_exporter_http_requests_total", "locust_exporter_connections_dropped_total"]
    samples = samples_of(registry.render(names=names).decode())
    return {"=".join(labels[0]): value for (_, labels), value in samples.items() if value}


def test_a_20_mb_scrape_read_slowly_delays_no_other(registry, port):
    """A scrape of 20 MB whose client reads nothing past the head (more than the sockets' buffers hold, so its
    answer waits for the client): other scrapes are accepted and answered meanwhile (within their timeout: its
    speed is `make bench`'s), and it gets its whole answer in the end."""
    big = Histogram("big_seconds", "h", ["id"], registry=registry, max_series=20_000)
    for i in range(20_000):  # 500 bytes each
        big.labels(f"id-{i:08d}").observe(0.5)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = slow.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
        assert length > 20e6
        for _ in range(3):
            status, _, body = http_get(f"http://127.0.0.1:{port}/metrics?name[]=locust_exporter_http_requests_total")
            assert status == 200 and b"locust_exporter_http_requests_total" in body
        rest = read_to_close(slow, timeout=30)
    assert len(head) + len(rest) > length


def test_two_hundred_scrapes_over_one_keep_alive_connection(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    served = []
    try:
        for i in range(200):
            headers = {"Accept-Encoding": "gzip"} if i % 2 else {}
            conn.request("GET", "/metrics?name[]=locust_exporter_http_requests_total", headers=headers)
            if i == 0:
                sock = conn.sock
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200 and int(r.getheader("Content-Length")) == len(body)
            assert conn.sock is sock, "the connection was not kept alive"
            if not i % 2:
                served.append(total(samples_of(body.decode()), "locust_exporter_http_requests_total", code="200"))
    finally:
        conn.close()
    # Every answer is a fresh render: the count of answered requests grows by one per request.
    assert served == [served[0] + 2 * i for i in range(100)]


def test_ipv6_loopback(registry):
    """IPv6 as IPv4 (tests bind loopback only: `0.0.0.0` and `::` go through the same code)."""
    with PrometheusExporter("::1", 0, registry=registry) as e:
        assert e.address is not None and e.address[0] == "::1"
        status, headers, body = http_get(f"http://[::1]:{e.address[1]}/metrics")
    assert status == 200 and int(headers["Content-Length"]) == len(body)
