"""The master's merge of worker reports, as untrusted input: its caps, the names it reserves, the values and
the format versions it takes or refuses, and the metrics it keeps of it."""

from __future__ import annotations

import pytest
from locust_prometheus_exporter import CollectorRegistry, Counter, Gauge, Histogram, _native
from support.reports import COUNTER, GAUGE, LIVESUM, Family, encode
from support.scrape import promtool_check, samples_of, scrape, total

WORKERS, NAMES = 20, 1000


def reports_total(registry: CollectorRegistry, result: str) -> float:
    return total(samples_of(registry.render().decode()), "locust_exporter_reports_total", result=result)


def test_twenty_workers_with_a_thousand_names_each_share_the_masters_cap(registry):
    _native.RequestListener(registry)  # Locust's metrics and the default cap, 1,000 names, on the master
    expected = 0
    for w in range(WORKERS):
        worker = CollectorRegistry()
        listener = _native.RequestListener(worker)
        for i in range(NAMES):
            for _ in range(1 + (i + w) % 3):
                listener(request_type="GET", name=f"/w{w}/{i}", response_time=5.0, response_length=1)
                expected += 1
        assert registry.apply_report(f"worker-{w}", worker.take_report()) == []
    samples = samples_of(registry.render().decode())
    names = {dict(labels)["name"] for (metric, labels) in samples if metric == "locust_requests_total"}
    assert len(names) <= NAMES + 1
    assert _native.OVERFLOW_NAME in names
    assert total(samples, "locust_requests_total") == expected
    assert total(samples, "locust_request_duration_seconds_count") == expected
    overflowed = total(samples, "locust_requests_total", name=_native.OVERFLOW_NAME)
    assert overflowed > 0
    assert total(samples, "locust_exporter_names_overflowed_total") == overflowed
    assert reports_total(registry, "applied") == WORKERS


def test_a_workers_gauge_named_like_a_process_metric_is_dropped_and_the_page_passes_promtool(registry, port):
    worker = [
        Family("process_cpu_seconds_total", GAUGE, series={(): (12.0, 1.0)}, mode=LIVESUM),
        Family("jobs_done", COUNTER, ["queue"], {("a",): 3.0}),
    ]
    logged = registry.apply_report("worker-1", encode(worker))
    assert any("process_cpu_seconds_total" in line for line in logged), logged
    assert registry.apply_report("worker-1", encode(worker)) == [], "logged once per worker"
    scraped = scrape(port)  # checked by promtool
    assert total(scraped, "jobs_done_total", queue="a") == 3
    assert ("process_cpu_seconds_total", ()) in scraped, "the master's own process metric"
    promtool_check(registry.render().decode())
    assert reports_total(registry, "partial") == 2


@pytest.mark.parametrize("name", ["process_cpu_seconds_total", "process_x", "locust_requests", "locust_users_running"])
def test_a_custom_metric_may_not_take_a_reserved_name(registry, name):
    for kind in (Counter, Gauge, Histogram):
        with pytest.raises(ValueError, match="reserved"):
            kind(name, "h", registry=registry)


def test_a_report_of_the_previous_version_is_merged(registry):
    assert registry.apply_report("old", encode([Family("jobs_done", COUNTER, ["q"], {("a",): 2.0})], 2)) == []
    assert total(samples_of(registry.render().decode()), "jobs_done_total", q="a") == 2
    assert reports_total(registry, "applied") == 1


def test_a_report_of_a_later_version_with_fields_this_one_does_not_know_is_merged(registry):
    later = encode([Family("jobs_done", COUNTER, ["q"], {("a",): 5.0})], 4, extra=b"\x07unknown")
    assert registry.apply_report("new", later) == []
    assert total(samples_of(registry.render().decode()), "jobs_done_total", q="a") == 5


def test_a_report_of_a_version_too_old_is_refused_with_one_line_and_counted(registry):
    registry.apply_report("w", encode([Family("jobs_done", COUNTER, [], {(): 4.0})]))
    logged = registry.apply_report("w", b"LPE1\x01garbage")
    assert len(logged) == 1 and "1" in logged[0] and "3" in logged[0], logged
    assert registry.apply_report("w", b"LPE1\x01garbage") == [], "one line per worker"
    assert len(registry.apply_report("other", b"LPE1\x01garbage")) == 1
    assert reports_total(registry, "refused") == 3
    assert total(samples_of(registry.render().decode()), "jobs_done_total") == 4, "nothing merged is lost"


def test_values_out_of_range_are_left_out_and_totals_stay_exact(registry):
    registry.apply_report("w", encode([Family("jobs_done", COUNTER, ["q"], {("a",): 4.0})]))
    for bad in (float("nan"), -1.0, float("inf")):
        logged = registry.apply_report("w", encode([Family("jobs_done", COUNTER, ["q"], {("a",): bad, ("b",): 1.0})]))
        assert all("counter" in line for line in logged), logged
    samples = samples_of(registry.render().decode())
    assert total(samples, "jobs_done_total", q="a") == 4
    assert total(samples, "jobs_done_total", q="b") == 1
    assert reports_total(registry, "partial") == 3
    assert total(samples, "locust_exporter_report_apply_seconds_total") > 0
