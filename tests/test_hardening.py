"""The endpoint under what load generators meet: no descriptors left, slow and idle clients, huge or
malformed requests, long keep-alive, forks while serving, and configurations it cannot serve."""

from __future__ import annotations

import http.client
import os
import random
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
import warnings

import pytest
from conftest import EXAMPLES, free_port, http_get, locust_cmd, samples_of, total
from locust_prometheus_exporter import Counter, PrometheusExporter, _native

pytestmark = pytest.mark.timeout(120)

HALF_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
#: The server's documented limits (README, "HTTP server limits").
HEAD_TIMEOUT = 10.0
CONNECTIONS = 512


def os_threads() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def server_counts(port: int) -> dict[str, float]:
    """The server's own counters, from a scrape: `code=200`, `reason=limit`, ..."""
    status, _, body = http_get(f"http://127.0.0.1:{port}/metrics?name[]=locust_exporter_http_requests_total"
                               "&name[]=locust_exporter_connections_dropped_total")  # fmt: skip
    assert status == 200
    return {"=".join(labels[0]): value for (_, labels), value in samples_of(body.decode()).items()}


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def read_to_close(s: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed); fails on timeout."""
    s.settimeout(timeout)
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


@pytest.fixture
def port():
    """A plain-Python exporter on a free loopback port; yields the port."""
    with PrometheusExporter("127.0.0.1", free_port()) as e:
        assert e.address is not None
        yield e.address[1]


EXHAUST = """
import os, resource, sys
from locust_prometheus_exporter import PrometheusExporter
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
e = PrometheusExporter("127.0.0.1", 0)
e.start()
print(e.address[1], flush=True)
held = []
sys.stdin.readline()
try:
    while True:
        # A regular file: gevent's os.close closes it at once (a device's close waits for the hub).
        held.append(os.open(sys.executable, os.O_RDONLY))
except OSError:
    pass
print("exhausted", flush=True)
sys.stdin.readline()
for fd in held:
    os.close(fd)
print("freed", flush=True)
sys.stdin.readline()
e.close()
"""


def test_descriptor_exhaustion_then_recovery():
    """With no descriptor left, accepting fails; the server keeps listening, logs it once, counts it,
    and answers the connections that waited as soon as descriptors are free again."""
    child = subprocess.Popen([sys.executable, "-c", EXHAUST], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdin and child.stdout and child.stderr
    try:
        port = int(child.stdout.readline())
        before = server_counts(port)
        child.stdin.write("exhaust\n")
        child.stdin.flush()
        assert child.stdout.readline() == "exhausted\n"
        waiting = []
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            waiting.append(s)
        # Several failed accepts (100 ms, 200 ms, 400 ms, 800 ms apart), none answered.
        waiting[0].settimeout(1.6)
        with pytest.raises(TimeoutError):
            waiting[0].recv(1)
        child.stdin.write("free\n")
        child.stdin.flush()
        assert child.stdout.readline() == "freed\n"
        for s in waiting:
            assert read_to_close(s, timeout=3).startswith(b"HTTP/1.1 200"), "a waiting scrape was not answered"
            s.close()
        counts = delta(server_counts(port), before)
        assert counts["reason=accept_error"] >= 3
        child.stdin.write("quit\n")
        child.stdin.flush()
        _, err = child.communicate(timeout=10)
    finally:
        child.kill()
    assert child.returncode == 0, err
    logged = [line for line in err.splitlines() if "accepting a connection" in line]
    assert len(logged) == 1, err
    assert f"127.0.0.1:{port}" in logged[0] and "ulimit -n" in logged[0]


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
        start = time.monotonic()
        status, _, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        took = time.monotonic() - start
        assert status == 200 and b"locust_exporter_http_requests_total" in body
        assert took < 2, f"a scrape took {took:.2f} s among 1,000 slow clients"
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


MALFORMED = [
    b"\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
    b"GET / HTTP/1.1\r\n: empty\r\n\r\n",
    b"G\x00T / HTTP/1.1\r\n\r\n",
    b"GET /\x7f HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)),
]


def test_malformed_and_random_requests(port):
    """500 requests, each on its own connection then half-closed: every one ends, with an error answer or
    none, and the server goes on answering."""
    rng = random.Random(20261127)
    requests = [MALFORMED[i % len(MALFORMED)] for i in range(100)]
    requests += [rng.randbytes(rng.randint(1, 3000)) for _ in range(300)]
    # Random bytes in the shape of a request line and headers.
    words = [b"GET", b"HEAD", b"/metrics", b"HTTP/1.1", b"\r\n", b":", b" ", b"\t", b"\x00", b"%", b"?name[]="]
    requests += [b"".join(rng.choice(words) for _ in range(rng.randint(1, 60))) + b"\r\n\r\n" for _ in range(100)]
    before = server_counts(port)
    seen: dict[str, int] = {}
    for request in requests:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            try:
                s.sendall(request)
                s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = read_to_close(s, timeout=5)
        if answer:
            assert answer.startswith(b"HTTP/1.1 "), answer[:80]
            code = answer.split(b" ", 2)[1].decode()
            assert code in ("200", "400", "404", "405", "431"), answer[:80]
            seen[f"code={code}"] = seen.get(f"code={code}", 0) + 1
    assert http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200
    # All but the empty request and the HTTP/2 preface of the fixed list are answered 400.
    assert seen["code=400"] >= 100 * (len(MALFORMED) - 3) // len(MALFORMED)
    counts = delta(server_counts(port), before)
    for code, n in seen.items():
        assert counts[code] >= n, code


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


def test_forks_during_scrapes_leave_the_child_able_to_record_and_render(port):
    """A locustfile may fork while the endpoint is scraped; the child must not find a lock taken."""
    c = Counter("fork_during_scrape", "h", ["n"])
    for i in range(5000):
        c.labels(str(i)).inc()
    stop = threading.Event()
    scrapes = []

    def scrape_forever():
        while not stop.is_set():
            scrapes.append(http_get(f"http://127.0.0.1:{port}/metrics")[0])

    scraper = threading.Thread(target=scrape_forever)
    scraper.start()
    try:
        for i in range(100):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:
                ok = False
                try:
                    c.labels(f"child{i}").inc()
                    ok = b'fork_during_scrape_total{n="child%d"} 1.0' % i in _native.render()
                finally:
                    os._exit(0 if ok else 1)
            deadline = time.monotonic() + 10
            while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            if done[0] == 0:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail(f"fork {i}: the child hung recording or rendering")
            assert os.waitstatus_to_exitcode(done[1]) == 0, f"fork {i}"
            time.sleep(0.005)
    finally:
        stop.set()
        scraper.join()
        c.clear()
    assert len(scrapes) > 100 and set(scrapes) == {200}


def quick_locust(*args: str, unprivileged: bool = False) -> subprocess.CompletedProcess:
    """A headless Locust run that should stop at init: no request is ever sent to its (closed) target.
    `unprivileged` takes away the right to bind ports below 1024, which root has, with util-linux's setpriv."""
    cmd = locust_cmd(EXAMPLES / "locustfile.py", "--headless", "-u", "1", "-t", "5s", "-H", "http://127.0.0.1:9", *args)
    if unprivileged and os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set", "-net_bind_service", "--inh-caps", "-net_bind_service", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def taken_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


@pytest.mark.parametrize("case", ["port-busy", "foreign-address", "privileged-port", "bad-labels", "bad-buckets"])
def test_configuration_errors_stop_locust_with_one_line(case):
    with taken_port() as taken:
        busy = str(taken.getsockname()[1])
        args, expected = {
            "port-busy": (("--prometheus-host", "127.0.0.1", "--prometheus-port", busy),
                          f"cannot listen on 127.0.0.1:{busy}: Address already in use"),
            # An address of no interface here (TEST-NET-1): refused locally, as an unknown name would be,
            # without asking a name server.
            "foreign-address": (("--prometheus-host", "192.0.2.1", "--prometheus-port", busy),
                                f"cannot listen on 192.0.2.1:{busy}: Cannot assign requested address"),
            "privileged-port": (("--prometheus-host", "127.0.0.1", "--prometheus-port", "80"),
                                "cannot listen on 127.0.0.1:80: Permission denied"),
            "bad-labels": (("--prometheus-port", "0", "--prometheus-labels", "env"), "expected name=value"),
            "bad-buckets": (("--prometheus-port", "0", "--prometheus-buckets", "1,x"), "--prometheus-buckets"),
        }[case]  # fmt: skip
        r = quick_locust(*args, unprivileged=case == "privileged-port")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    ours = [line for line in r.stderr.splitlines() if "locust-prometheus-exporter" in line]
    assert len(ours) == 1 and expected in ours[0], r.stderr
    if "cannot listen" in expected:
        assert "--prometheus-port" in ours[0]


LOW_FD_LOCUSTFILE = """
from locust import HttpUser, constant, task
from locust_prometheus_exporter import PrometheusExporter

exporter = PrometheusExporter("127.0.0.1", 0)

class U(HttpUser):
    wait_time = constant(0.05)

    @task
    def t(self):
        self.client.get("/")
"""


def test_locust_at_a_low_descriptor_limit_keeps_its_endpoint(target, tmp_path):
    """300 users at `ulimit -n 160`: Locust runs out of descriptors, and the endpoint answers during the
    run and after it."""
    locustfile = tmp_path / "lowfd.py"
    locustfile.write_text(LOW_FD_LOCUSTFILE)
    port, web_port = free_port(), free_port()
    cmd = locust_cmd(locustfile, "-H", target, "--autostart", "--autoquit", "6", "-t", "8s", "-u", "300", "-r", "300",
                     "--web-host", "127.0.0.1", "--web-port", str(web_port),
                     "--prometheus-host", "127.0.0.1", "--prometheus-port", str(port))  # fmt: skip
    log = tmp_path / "locust.log"

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (160, 160))

    with open(log, "w") as out:
        locust = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=low_limit)
    try:
        during = after = None
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and locust.poll() is None:
            try:
                status, _, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            except OSError:
                time.sleep(0.2)
                continue
            samples = samples_of(body.decode())
            users = total(samples, "locust_users_running")
            if status == 200 and users == 300 and during is None:
                during = samples
            elif status == 200 and during is not None and users == 0:
                after = samples
                break
            time.sleep(0.5)
        output = log.read_text()
        assert during is not None, f"no answer while the users ran\n{output[-3000:]}"
        assert after is not None, f"no answer after the test stopped\n{output[-3000:]}"
        assert locust.wait(timeout=30) in (0, 1)
    finally:
        locust.kill()
    output = log.read_text()
    assert "Too many open files" in output, "the run never ran out of descriptors: the test proves nothing"
    assert total(after, "locust_users_total") == 300


def test_ipv6_loopback():
    """IPv6 as IPv4 (tests bind loopback only: `0.0.0.0` and `::` go through the same code)."""
    with PrometheusExporter("::1", 0) as e:
        assert e.address is not None and e.address[0] == "::1"
        status, headers, body = http_get(f"http://[::1]:{e.address[1]}/metrics")
    assert status == 200 and int(headers["Content-Length"]) == len(body)
