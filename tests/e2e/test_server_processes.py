"""The exporter's HTTP endpoint with other processes: a scrape by curl while Python holds the GIL, and a
forked child."""

from __future__ import annotations

import ctypes
import os
import warnings

from locust_prometheus_exporter import Counter, PrometheusExporter
from support.scrape import http_get
from support.server import listening, listening_ports, url


def test_scrape_needs_no_gil(tmp_path):
    """A scrape is answered while the main thread holds the GIL: it waits for the scraping process
    in a C call made through `ctypes.PyDLL`, which keeps the GIL. A server that needed the GIL would
    leave curl to give up after its `--max-time`. (posix_spawn, not subprocess: gevent's patched
    `wait` would never see a child reaped behind its back.)"""
    libc = ctypes.PyDLL(None)
    libc.waitpid.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    out = tmp_path / "code"
    with PrometheusExporter("127.0.0.1", 0) as e:
        pid = os.posix_spawnp(
            "curl",
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", url(e)],
            os.environ,
            file_actions=[(os.POSIX_SPAWN_OPEN, 1, str(out), os.O_WRONLY | os.O_CREAT, 0o600)],
        )
        status = ctypes.c_int()
        assert libc.waitpid(pid, ctypes.byref(status), 0) == pid
    assert os.waitstatus_to_exitcode(status.value) == 0
    assert out.read_text() == "200"


def test_a_forked_child_of_a_serving_parent_starts_from_zero_and_can_serve(registry):
    c = Counter("fork_counter", "h", registry=registry)
    c.inc(5)
    # As a locustfile does: this installs the fork hooks.
    with PrometheusExporter("127.0.0.1", 0, registry=registry):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the parent serves: it has threads
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                # The parent's value is not this child's: reporting it again would count it twice.
                ok = b"fork_counter_total 0.0" in registry.render()
                c.inc()
                with PrometheusExporter("127.0.0.1", 0, registry=registry) as e:
                    ok = ok and b"fork_counter_total 1.0" in http_get(url(e))[2]
                code = 0 if ok else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"fork_counter_total 5.0" in registry.render()


def test_a_forked_child_does_not_hold_the_parents_listening_socket(registry):
    """The child closes its copy of the parent's listening socket at the fork: while the child lives, the
    parent's `close()` frees the port, and the child listens on nothing of the parent's."""
    exporter = PrometheusExporter("127.0.0.1", 0, registry=registry)  # installs the fork hooks
    exporter.start()
    assert exporter.address is not None
    port = exporter.address[1]
    forked, release = os.pipe(), os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the parent serves: it has threads
        pid = os.fork()
    if pid == 0:
        # The fork hooks have run when os.fork() returns here. Bytes, not EOF, signal both ways: with gevent's
        # monkey-patching, a pipe's os.close() in the child waits for a hub that does not run here.
        os.write(forked[1], b"f")
        os.read(release[0], 1)  # lives until the parent has checked
        os._exit(0)
    try:
        assert os.read(forked[0], 1) == b"f"
        assert port not in listening_ports(pid)
        exporter.close()
        assert not listening(port), "the port is still bound after close()"
    finally:
        os.write(release[1], b"r")
        _, status = os.waitpid(pid, 0)
        for fd in (*forked, *release):
            os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
