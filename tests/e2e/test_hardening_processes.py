"""The endpoint under what load generators meet, in processes of their own: no descriptors left, forks while
serving, and configurations it cannot serve."""

from __future__ import annotations

import gzip
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable

import pytest
from locust_prometheus_exporter import CollectorRegistry, Counter, PrometheusExporter
from support.locust_run import LocustRun, locust_cmd
from support.paths import EXAMPLES, LOCUSTFILES
from support.scrape import Samples, http_get, samples_of, total
from support.server import read_to_close, server_counts, url

pytestmark = pytest.mark.timeout(120)

EXHAUST = """
import os, re, resource, sys, time
from locust_prometheus_exporter import REGISTRY, PrometheusExporter
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
e = PrometheusExporter("127.0.0.1", 0)
e.start()
print(e.address[1], flush=True)
held = []
def take_every_descriptor():
    taken = len(held)
    try:
        while True:
            # A regular file: gevent's os.close closes it at once (a device's close waits for the hub).
            held.append(os.open(sys.executable, os.O_RDONLY))
    except OSError:
        return len(held) - taken
sys.stdin.readline()
take_every_descriptor()
# Again, until none was freed in the meantime (one freed later would be accepted on, and no accept would fail).
while True:
    time.sleep(0.1)
    if not take_every_descriptor():
        break
print("exhausted", flush=True)
if sys.stdin.readline() == "count\\n":
    # Until the server failed to accept 3 times (rendered here: a scrape would need a descriptor).
    def accept_errors():
        text = REGISTRY.render(names=["locust_exporter_connections_dropped_total"]).decode()
        return float(re.search(r'reason="accept_error"} (\\S+)', text).group(1))
    deadline = time.monotonic() + 30
    while accept_errors() < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    print("counted" if accept_errors() >= 3 else f"{accept_errors()} failed accepts in 30 s", flush=True)
    sys.stdin.readline()
for fd in held:
    os.close(fd)
print("freed", flush=True)
sys.stdin.readline()
e.close()
"""


def exhausting_child() -> tuple[subprocess.Popen, int]:
    """`EXHAUST` in a fresh interpreter, serving at a limit of 256 descriptors: the child, and its port."""
    child = subprocess.Popen([sys.executable, "-c", EXHAUST], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout
    return child, int(child.stdout.readline())


def step(child: subprocess.Popen, word: str, answer: str) -> None:
    """Tells `EXHAUST` to go on (`exhaust`, `count` the failed accepts, `free`) and waits until it has."""
    assert child.stdin and child.stdout
    child.stdin.write(f"{word}\n")
    child.stdin.flush()
    assert child.stdout.readline() == f"{answer}\n"


def test_descriptor_exhaustion_then_recovery():
    """With no descriptor left and the server's spares in use, accepting fails; the server keeps listening,
    logs it once, counts it, and answers the connections that waited as soon as descriptors are free again."""
    child, port = exhausting_child()
    kept = []
    try:
        # No scrape before the exhaustion: the server could still be closing its connection when the child has
        # taken every descriptor, and the one it frees would then be accepted on (the counts start at 0 anyway).
        step(child, "exhaust", "exhausted")
        # Keep-alive connections, answered and left open, hold every spare.
        for _ in range(SPARES):
            kept.append(http.client.HTTPConnection("127.0.0.1", port, timeout=5))
            kept[-1].request("GET", "/")
            assert kept[-1].getresponse().read().startswith(b"<!doctype html>")
        waiting = []
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            waiting.append(s)
        # Several failed accepts (100 ms, 200 ms, 400 ms, 800 ms apart), counted; none answered.
        step(child, "count", "counted")
        for s in waiting:
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(1)
            s.setblocking(True)
            s.settimeout(5)
        step(child, "free", "freed")
        for s in waiting:
            assert read_to_close(s, timeout=3).startswith(b"HTTP/1.1 200"), "a waiting scrape was not answered"
            s.close()
        assert server_counts(port)["reason=accept_error"] >= 3
        _, err = child.communicate("quit\n", timeout=10)
    finally:
        for conn in kept:
            conn.close()
        child.kill()
    assert child.returncode == 0, err
    logged = [line for line in err.splitlines() if "accepting a connection" in line]
    assert len(logged) == 1, err
    assert f"127.0.0.1:{port}" in logged[0] and "ulimit -n" in logged[0]


def test_a_process_out_of_descriptors_answers_scrapes():
    """With no descriptor left, a scrape is accepted on one of the server's spares and rendered (gzipped or
    not, on render threads started now) without opening a descriptor: `process_open_fds` is the limit. Each
    spare comes back as its connection closes, so more scrapes than spares are answered one after another."""
    child, port = exhausting_child()
    try:
        step(child, "exhaust", "exhausted")
        for i in range(SPARES + 2):
            gzipped = {"Accept-Encoding": "gzip"} if i % 2 else {}
            status, headers, body = http_get(f"http://127.0.0.1:{port}/metrics", gzipped, timeout=5)
            assert status == 200
            text = gzip.decompress(body).decode() if i % 2 else body.decode()
            assert headers.get("Content-Encoding") == ("gzip" if i % 2 else None)
            samples = samples_of(text)
            assert total(samples, "process_open_fds") == total(samples, "process_max_fds") == 256
            assert total(samples, "locust_exporter_connections_reserved_total") == i + 1
        assert total(samples, "locust_exporter_reserve_misses_total") == 0
        step(child, "free", "freed")
        child.communicate("quit\n", timeout=10)
    finally:
        child.kill()
    assert child.returncode == 0


CPU_BUSY = """
import sys, time
from locust_prometheus_exporter import PrometheusExporter
e = PrometheusExporter("127.0.0.1", 0)
e.start()
start = time.process_time()
while time.process_time() < start + 0.3:
    pass
print(e.address[1], time.process_time(), flush=True)
sys.stdin.readline()
e.close()
"""


def test_cpu_seconds_are_fractional():
    """After about 0.3 s of CPU (and the interpreter's start), `process_cpu_seconds_total` is the process's CPU
    time to the millisecond, not whole seconds."""
    child = subprocess.Popen([sys.executable, "-c", CPU_BUSY], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)  # fmt: skip
    assert child.stdin and child.stdout
    try:
        port, cpu = child.stdout.readline().split()
        status, _, body = http_get(f"http://127.0.0.1:{port}/metrics?name[]=process_cpu_seconds_total")
        child.stdin.write("quit\n")
        child.stdin.flush()
        child.communicate(timeout=10)
    finally:
        child.kill()
    assert status == 200
    served = total(samples_of(body.decode()), "process_cpu_seconds_total")
    assert 0.2 <= served <= 2.0
    # Read after `cpu`, by a process idle meanwhile but for the scrape.
    assert float(cpu) - 0.001 <= served < float(cpu) + 0.1, (served, cpu)


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


def null_descriptors() -> int:
    """This process's descriptors open on /dev/null (the reserve's among them)."""
    fds = os.listdir("/proc/self/fd")
    return sum(1 for fd in fds if os.path.realpath(f"/proc/self/fd/{fd}") == "/dev/null")


def test_a_forked_child_holds_no_reserve_and_reads_its_own_process_metrics(port):
    """A forked child (`--processes`) closes the spares it inherits; one that then serves makes its own reserve,
    and its process metrics are its own, not its parent's: it opens 50 descriptors its parent does not have.
    (The parent holds a reserve: `port` serves from this process.)"""
    in_parent = null_descriptors()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            closed = in_parent - null_descriptors()
            held = [os.open(sys.executable, os.O_RDONLY) for _ in range(50)]
            with PrometheusExporter("127.0.0.1", 0, registry=CollectorRegistry()) as e:
                served = total(samples_of(http_get(url(e))[2].decode()), "process_open_fds")
                own = len(os.listdir("/proc/self/fd")) - 1  # less listdir's own
                made = null_descriptors() - (in_parent - closed)
            for fd in held:
                os.close(fd)
            code = 0 if (closed, made) == (SPARES + 1, SPARES + 1) and abs(served - own) <= 3 else 2
            if code:
                print(f"closed {closed}, made {made}, served {served}, own {own}", flush=True)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


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


#: The limit `locustfiles/starved.py` runs at, and the run's length.
FD_LIMIT = 160
STARVED_RUN = 15
#: Spare descriptors the server holds for when the process has none (README, "HTTP server").
SPARES = 4


def starved_run(run_locust) -> LocustRun:
    """`locustfiles/starved.py`: 300 users at 160 descriptors, out of them from the first second to the end."""
    return run_locust(LOCUSTFILES / "starved.py", users=300, rate=300, run_time=STARVED_RUN, autoquit=5,
                      env={"FD_LIMIT": str(FD_LIMIT)})  # fmt: skip


def every_half_second_of_the_run(run: LocustRun, scrape_once: Callable[[], Samples]):
    """Yields every 0.5 s from the first scrape that sees all users running and the descriptors all taken (so
    until the run's end) until 2 s before the run's planned end."""

    def starved() -> bool:
        samples = scrape_once()
        return total(samples, "locust_users_running") == 300 and total(samples, "process_open_fds") == FD_LIMIT

    run.wait_until(starved, 30, "all users running, out of descriptors")
    start = time.monotonic()
    next_at = start
    while next_at < start + STARVED_RUN - 3:
        time.sleep(max(0.0, next_at - time.monotonic()))
        yield
        next_at += 0.5


def assert_starved_then_served_after(run: LocustRun) -> None:
    """The run ran out of descriptors, the server served on its reserve, and it answers after the run."""

    def stopped() -> bool:
        status, _, body = http_get(f"http://127.0.0.1:{run.metrics_port}/metrics", timeout=5)
        samples = samples_of(body.decode())
        return status == 200 and total(samples, "locust_users_running") == 0 and run.web_state()["state"] == "stopped"

    run.wait_until(stopped, 30, "an answer once the run stopped")
    after = samples_of(http_get(f"http://127.0.0.1:{run.metrics_port}/metrics")[2].decode())
    assert total(after, "locust_users_total") == 300
    assert total(after, "locust_exporter_connections_reserved_total") > 0
    run.finish()
    assert "Too many open files" in run.output(), "the run never ran out of descriptors: the test proves nothing"


def starved_samples(status: int, body: bytes) -> Samples:
    """An answer during the run: a 200 from a process at its descriptor limit."""
    assert status == 200
    samples = samples_of(body.decode())
    assert total(samples, "process_max_fds") == FD_LIMIT
    # The spares released for this scrape are in use; descriptors Locust frees are taken again within moments.
    assert total(samples, "process_open_fds") >= FD_LIMIT - 10, total(samples, "process_open_fds")
    return samples


def test_a_locust_out_of_descriptors_answers_scrapes_on_new_connections(run_locust):
    """300 users at `ulimit -n 160`: Locust runs out of descriptors for the whole run, and the endpoint
    answers at least 90 % of the scrapes made every 0.5 s on a new connection each, from its reserve."""
    run = starved_run(run_locust)
    url = f"http://127.0.0.1:{run.metrics_port}/metrics"
    answers: list[tuple[int, bytes] | None] = []
    for _ in every_half_second_of_the_run(run, lambda: samples_of(http_get(url, timeout=2)[2].decode())):
        try:
            status, _, body = http_get(url, timeout=2)
            answers.append((status, body))
        except OSError:
            answers.append(None)
    answered = [a for a in answers if a is not None and a[0] == 200]
    assert len(answered) >= 0.9 * len(answers), f"{len(answered)} of {len(answers)} answered\n{run.output()}"
    for status, body in answered:
        starved_samples(status, body)
    assert_starved_then_served_after(run)


def test_a_scrapers_keep_alive_connection_is_answered_all_the_while(run_locust):
    """The same run, scraped every 0.5 s over one keep-alive connection, as Prometheus does: every scrape
    is answered, on the same connection."""
    run = starved_run(run_locust)
    conn = http.client.HTTPConnection("127.0.0.1", run.metrics_port, timeout=2)
    conn.connect()
    sock = conn.sock

    def scrape_kept() -> tuple[int, bytes]:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        answer = (r.status, r.read())
        assert conn.sock is sock, "the connection was closed"
        return answer

    try:
        for _ in every_half_second_of_the_run(run, lambda: samples_of(scrape_kept()[1].decode())):
            starved_samples(*scrape_kept())
    finally:
        conn.close()
    assert_starved_then_served_after(run)
