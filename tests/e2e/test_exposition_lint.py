"""`promtool check metrics`, Prometheus's own parser and linter, on custom metrics of every shape and edge
value: as a registry renders them, and as a scrape gets them with the process metrics and the server's own."""

from __future__ import annotations

import math

from locust_prometheus_exporter import Counter, Gauge, Histogram
from support.scrape import promtool_check, scrape, total

ESCAPED = 'back\\slash "quoted" new\nline # é \\n'


def test_custom_metrics_of_every_shape_pass_promtool(registry, port):
    Counter("plain", "plain", registry=registry).inc()
    Counter("suffixed_total", "suffixed", registry=registry).inc(2.5)
    Counter("sent_total", "h", namespace="app", subsystem="net", unit="bytes", registry=registry).inc()
    labelled = Counter("labelled", "h", ["method", "code"], registry=registry)
    labelled.labels("GET", 200).inc()
    labelled.labels(None, 1.5).inc()
    Gauge("escaped", 'help with \\ and\nnewline and "quotes"', ["v"], registry=registry).labels(ESCAPED).set(3)
    for name, value in (("positive_infinity", math.inf), ("negative_infinity", -math.inf), ("not_a_number", math.nan)):
        Gauge(name, "h", registry=registry).set(value)
    Gauge("by_worker", "h", ["worker"], registry=registry, multiprocess_mode="max").labels("w1").set(1)
    Histogram("route_seconds", "h", ["route"], registry=registry, buckets=[0.1, 1]).labels("/x").observe(0.5)
    Histogram("native_seconds", "h", registry=registry, buckets=[1.0], native=True).observe(0.5)

    promtool_check(registry.render().decode())
    scraped = scrape(port, lint=True)
    assert total(scraped, "app_net_sent_bytes_total") == 1
    assert total(scraped, "escaped", v=ESCAPED) == 3
    assert total(scraped, "route_seconds_bucket", route="/x", le="1.0") == 1
    assert ("process_cpu_seconds_total", ()) in scraped
