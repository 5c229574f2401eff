"""The exporter's lifecycle and its HTTP endpoint, outside Locust."""

from __future__ import annotations

import gzip
import os
import re
import socket

import locust
import pytest
from locust.event import EventHook
from locust_prometheus_exporter import Counter, PrometheusExporter, _native
from support.scrape import OPENMETRICS, TEXT, delimited_messages, http_get, samples_of, total
from support.server import listening, listening_ports, os_threads, url

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.fixture
def exporter(registry):
    """An exporter of `registry` serving on loopback (on the port the system picks), as plain-Python use starts it."""
    e = PrometheusExporter("127.0.0.1", 0, registry=registry)
    e.start()
    yield e
    e.close()


def test_constructing_binds_nothing_and_starts_no_thread(registry):
    threads = os_threads()
    ports = listening_ports(os.getpid())
    e = PrometheusExporter("127.0.0.1", 0, registry=registry)
    assert os_threads() == threads
    assert listening_ports(os.getpid()) == ports
    assert e.address is None
    e.start()
    assert e.address is not None and e.address[0] == "127.0.0.1"
    port = e.address[1]
    assert listening_ports(os.getpid()) == ports | {port}
    e.start(object())
    e.stop()
    assert listening(port), "stop() is per user and leaves the server up"
    e.close()
    e.close()
    assert listening_ports(os.getpid()) == ports
    # The port is free again for anyone.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_context_manager_serves_and_closes(registry):
    with PrometheusExporter("127.0.0.1", 0, registry=registry) as e:
        assert e.address is not None
        port = e.address[1]
        assert http_get(url(e))[0] == 200
    assert port not in listening_ports(os.getpid())


def test_bind_failure_is_a_clear_oserror(registry):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        e = PrometheusExporter("127.0.0.1", port, registry=registry)
        with pytest.raises(OSError, match=f"127.0.0.1:{port}.*[Aa]ddress already in use") as info:
            e.serve()
        assert info.value.errno == 98
        e.start()  # logs, never raises
        assert e.address is None


@pytest.mark.parametrize(("args", "error"), [(("127.0.0.1", -1), ValueError), (("127.0.0.1", 70000), ValueError),
                                             (("127.0.0.1", "9091"), TypeError), ((None, 9091), TypeError),
                                             (("127.0.0.1", True), TypeError)])  # fmt: skip
def test_bad_arguments(args, error):
    with pytest.raises(error):
        PrometheusExporter(*args)


def handlers() -> dict[str, int]:
    """How many listeners each of Locust's events has."""
    events = vars(locust.events).items()
    return {name: len(hook._handlers) for name, hook in events if isinstance(hook, EventHook)}


def test_bad_buckets_are_refused_before_anything_is_installed(registry):
    first = PrometheusExporter.first()
    before = handlers()
    with pytest.raises(ValueError, match="buckets"):
        PrometheusExporter("127.0.0.1", 0, registry=registry, buckets=[2, 1])
    assert registry.render() == b"", "Locust's metrics were registered"
    assert handlers() == before
    assert PrometheusExporter.first() is first


def test_metrics_endpoint_formats_and_headers(registry, exporter):
    Counter("http_test_counter", "h", registry=registry).inc(3)
    status, headers, body = http_get(url(exporter))
    assert (status, headers["Content-Type"]) == (200, TEXT)
    assert total(samples_of(body.decode()), "http_test_counter_total") == 3
    assert body.endswith(b"\n")

    status, headers, body = http_get(url(exporter), {"Accept": PROMETHEUS_ACCEPT})
    assert headers["Content-Type"] == OPENMETRICS
    assert total(samples_of(body.decode(), openmetrics=True), "http_test_counter_total") == 3

    status, headers, body = http_get(url(exporter), {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert b"http_test_counter_total 3.0" in gzip.decompress(body)
    for no_gzip in ("gzip;q=0", "identity", "br"):
        _, headers, body = http_get(url(exporter), {"Accept-Encoding": no_gzip})
        assert headers.get("Content-Encoding") is None and body.startswith(b"# HELP")


PROTOBUF = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"


def test_protobuf_when_the_scraper_prefers_it(registry, exporter):
    Counter("proto_test_counter", "h", registry=registry).inc()
    # What Prometheus sends once native histograms are enabled.
    accept = (
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,"
        "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
    )
    only = url(exporter, "/metrics?name[]=proto_test_counter_total")
    _, headers, body = http_get(only, {"Accept": accept})
    assert headers["Content-Type"] == PROTOBUF
    [family] = delimited_messages(body)
    assert family.startswith(b"\n\x18proto_test_counter_total"), family  # field 1, the name, with `_total`
    _, headers, zipped = http_get(only, {"Accept": accept, "Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped) == body
    everything = delimited_messages(http_get(url(exporter), {"Accept": accept})[2])
    # One message per family with samples, named as in the text exposition (a field 1 shorter than 128 bytes).
    families = re.findall(rb"# TYPE (\S+) \S+\n(?=[^#])", http_get(url(exporter))[2])
    assert [m[2 : 2 + m[1]] for m in everything] == families and len(families) > 1
    # Preferred by a lower q-value, or not delimited: text.
    protobuf = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily"
    for other in (f"{protobuf};encoding=delimited;q=0.2,text/plain;q=0.5", protobuf):
        assert http_get(only, {"Accept": other})[1]["Content-Type"] == TEXT


def test_name_filter_head_index_404_405(registry, exporter):
    Counter("filtered_a", "h", registry=registry).inc()
    Counter("filtered_b", "h", registry=registry).inc()
    _, _, body = http_get(url(exporter, "/metrics?name[]=filtered_a_total"))
    assert list(samples_of(body.decode())) == [("filtered_a_total", ())]

    status, headers, body = http_get(url(exporter), method="HEAD")
    assert (status, body, headers["Content-Type"]) == (200, b"", TEXT)
    status, headers, body = http_get(url(exporter, "/"))
    assert status == 200 and b'href="metrics"' in body
    assert http_get(url(exporter, "/other"))[0] == 404
    status, headers, _ = http_get(url(exporter), method="POST")
    assert (status, headers["Allow"]) == (405, "GET, HEAD")


def test_request_listener_never_raises(registry):
    listener = _native.RequestListener(registry)

    class Weird:
        @property
        def status_code(self):
            raise RuntimeError("no status")

        request = property(lambda self: 1 / 0)

    for kwargs in (
        {},
        {"request_type": None, "name": None},
        {"request_type": 1, "name": object(), "response_time": "x", "response_length": "y", "response": Weird()},
        {"request_type": "GET", "name": "/w", "response_time": None, "response_length": None, "exception": "text"},
        {"request_type": "GET", "name": "/w", "response_time": float("nan"), "response": 3, "context": {}},
    ):
        listener(**kwargs)
    samples = samples_of(registry.render().decode())
    assert total(samples, "locust_requests_total", name="/w") == 2
    assert total(samples, "locust_request_duration_seconds_count", name="/w") == 0
    assert total(samples, "locust_request_duration_seconds_sum", name="/w") == 0
