"""The endpoint under what load generators meet, in processes of their own: no descriptors left, forks while
serving, and configurations it cannot serve."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import threading
import time
import warnings

import pytest
from locust_prometheus_exporter import Counter
from support.locust_run import locust_cmd
from support.paths import EXAMPLES
from support.scrape import free_port, http_get, samples_of, total
from support.server import delta, read_to_close, server_counts

pytestmark = pytest.mark.timeout(120)

EXHAUST = """
import os, re, resource, sys, time
from locust_prometheus_exporter import REGISTRY, PrometheusExporter
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
# Until the server failed to accept 3 times (rendered here: a scrape would need a descriptor).
def accept_errors():
    text = REGISTRY.render(names=["locust_exporter_connections_dropped_total"]).decode()
    return float(re.search(r'reason="accept_error"} (\\S+)', text).group(1))
while accept_errors() < 3:
    time.sleep(0.05)
print("counted", flush=True)
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
        # Several failed accepts (100 ms, 200 ms, 400 ms, 800 ms apart), counted; none answered.
        child.stdin.write("count\n")
        child.stdin.flush()
        assert child.stdout.readline() == "counted\n"
        for s in waiting:
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(1)
            s.setblocking(True)
            s.settimeout(5)
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


def test_forks_during_scrapes_leave_the_child_able_to_record_and_render(registry, port):
    """A locustfile may fork while the endpoint is scraped; the child must not find a lock taken."""
    c = Counter("fork_during_scrape", "h", ["n"], registry=registry)
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
                    ok = b'fork_during_scrape_total{n="child%d"} 1.0' % i in registry.render()
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
