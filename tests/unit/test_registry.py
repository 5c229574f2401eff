"""Registries: names unique per registry, the default one, and what an exporter or a request listener of a
registry serves and records."""

from __future__ import annotations

import re
import uuid

import pytest
from locust_prometheus_exporter import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, PrometheusExporter
from locust_prometheus_exporter._native import RequestListener
from support.scrape import Samples, http_get, samples_of, total
from support.server import url


def samples(registry: CollectorRegistry, *names: str) -> Samples:
    """What `registry` renders (only the samples named `names`, if given)."""
    return samples_of(registry.render(names=list(names)).decode())


def served(registry: CollectorRegistry) -> Samples:
    """A scrape over HTTP of an exporter of `registry`, started and closed here."""
    with PrometheusExporter("127.0.0.1", 0, registry=registry) as e:
        assert e.registry is registry
        status, _, body = http_get(url(e))
    assert status == 200
    return samples_of(body.decode())


def test_the_same_name_in_two_registries_keeps_a_value_in_each(registry):
    other = CollectorRegistry()
    mine = Counter("shared", "h", registry=registry)
    theirs = Counter("shared", "h", registry=other)
    mine.inc(1)
    theirs.inc(2)
    assert samples(registry) == {("shared_total", ()): 1}
    assert samples(other) == {("shared_total", ()): 2}
    with pytest.raises(ValueError, match="duplicated"):
        Gauge("shared", "h", registry=registry)
    mine.inc()
    assert samples(registry) == {("shared_total", ()): 2}
    assert samples(other) == {("shared_total", ()): 2}


@pytest.mark.parametrize("kwargs", [{}, {"registry": None}], ids=["omitted", "none"])
def test_a_metric_made_without_a_registry_is_in_the_default_one(registry, kwargs):
    # REGISTRY lives as long as the process, which has no way to unregister: each call takes a name of its own,
    # so that the test passes again in the same process.
    name = f"in_default_{uuid.uuid4().hex}"
    Counter(name, "h", **kwargs).inc(3)
    assert samples(REGISTRY, f"{name}_total") == {(f"{name}_total", ()): 3}
    assert registry.render() == b""
    # The name is taken in REGISTRY only.
    Counter(name, "h", registry=registry)


def test_an_exporter_serves_its_registry_and_not_the_default_one(registry):
    default_only = f"default_only_{uuid.uuid4().hex}"  # REGISTRY outlives the test: a name of its own each time
    Counter(default_only, "h").inc()
    Counter("served", "h", registry=registry).inc(4)
    scraped = served(registry)
    assert total(scraped, "served_total") == 4
    assert ("locust_users_total", ()) in scraped, "Locust's metrics are in the exporter's registry"
    assert not [key for key in scraped if key[0].startswith(default_only)]


def test_two_exporters_of_two_registries_serve_each_its_own_value(registry):
    other = CollectorRegistry()
    Counter("tasks", "h", registry=registry).inc(1)
    Counter("tasks", "h", registry=other).inc(2)
    with (
        PrometheusExporter("127.0.0.1", 0, registry=registry) as mine,
        PrometheusExporter("127.0.0.1", 0, registry=other) as theirs,
    ):
        assert mine.address != theirs.address
        got = [total(samples_of(http_get(url(e))[2].decode()), "tasks_total") for e in (mine, theirs)]
    assert got == [1, 2]


@pytest.mark.parametrize("kind", [Counter, Gauge, Histogram])
def test_a_metric_given_something_else_than_a_registry_raises_type_error(kind):
    with pytest.raises(TypeError, match="CollectorRegistry"):
        kind("wrong_registry_type", "h", registry="x")
    assert REGISTRY.render(names=["wrong_registry_type", "wrong_registry_type_total"]) == b""


def test_an_exporter_given_something_else_than_a_registry_raises_type_error():
    first = PrometheusExporter.first()
    with pytest.raises(TypeError, match="registry must be a CollectorRegistry"):
        PrometheusExporter("127.0.0.1", 0, registry="x")
    assert PrometheusExporter.first() is first


def test_a_request_listener_records_into_its_registry_only(registry):
    other = CollectorRegistry()
    RequestListener(other)  # Locust's metrics registered there too, and nothing recorded
    listener = RequestListener(registry)
    listener(request_type="GET", name="/mine", response_time=2.0, response_length=5, exception=None, context={})
    assert total(samples(registry), "locust_requests_total", name="/mine") == 1
    assert total(samples(registry), "locust_response_length_bytes_total", name="/mine") == 5
    assert total(samples(other), "locust_requests_total") == 0
    assert not total(samples(REGISTRY, "locust_requests_total"), "locust_requests_total", name="/mine")


def test_closing_the_last_exporter_of_a_registry_stops_recording_into_it(registry):
    import locust

    def fire() -> None:
        locust.events.request.fire(
            request_type="GET", name="/r", response_time=1.0, response_length=0, response=None, exception=None
        )

    def recorded() -> float:
        return total(samples(registry, "locust_requests_total"), "locust_requests_total")

    first = PrometheusExporter("127.0.0.1", 0, registry=registry)
    second = PrometheusExporter("127.0.0.1", 0, registry=registry)
    fire()
    assert recorded() == 1, "two exporters of one registry share its recording: one count per request"
    first.close()
    fire()
    assert recorded() == 2, "the other exporter is open: recording goes on"
    second.close()
    second.close()
    fire()
    assert recorded() == 2, "no exporter open: not recorded"
    with PrometheusExporter("127.0.0.1", 0, registry=registry):
        fire()
    assert recorded() == 3, "a new exporter records again"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"buckets": [0.5, 1.0]}, "buckets differ from those of this registry's first exporter ([0.1, 1.0])"),
        (
            {"per_worker_metrics": True},
            "per_worker_metrics differs from that of this registry's first exporter (False)",
        ),
        ({"max_names": 10}, "max_names differs from that of this registry's first exporter (1000)"),
    ],
    ids=["buckets", "per_worker_metrics", "max_names"],
)
def test_an_exporter_of_a_registry_recorded_otherwise_is_refused_by_name(registry, kwargs, message):
    first = PrometheusExporter.first()
    with PrometheusExporter("127.0.0.1", 0, registry=registry, buckets=[0.1, 1, float("inf")]):
        with pytest.raises(ValueError, match="^" + re.escape(f"{message}: give the same, or a registry of its own")):
            PrometheusExporter("127.0.0.1", 0, registry=registry, **{"buckets": [0.1, 1], **kwargs})
        # The same settings are accepted, as given or with the +Inf bucket implied.
        PrometheusExporter("127.0.0.1", 0, registry=registry, buckets=[0.1, 1.0]).close()
    assert PrometheusExporter.first() is first
