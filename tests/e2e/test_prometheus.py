"""The README's PromQL queries, evaluated by a real Prometheus scraping real locust runs, agree with Locust."""

from __future__ import annotations

import csv
import math

import pytest
from support.paths import EXAMPLES
from support.prometheus import (
    ScrapedRun,
    classic_buckets,
    classic_quantile,
    final_scrape,
    increase_bounds,
    scrape_runs,
    split_quantile_query,
)

EXAMPLE_PLAIN = EXAMPLES / "locustfile.py"
EXAMPLE_CUSTOM = EXAMPLES / "locustfile_custom_metrics.py"

# The README's two queries, verbatim.
GET_OK = 'locust_requests_total{method="GET", status="200"}'
RATE_QUERY = f"sum(rate({GET_OK}[5m]))"
P95_QUERY = (
    'histogram_quantile(0.95, sum(rate(locust_request_duration_seconds_bucket{name="/about/"}[5m])) by (le, name))'
)


def csv_rows(scraped: ScrapedRun) -> dict[tuple[str, str], dict[str, str]]:
    """Locust's stats csv, (method, name) -> row, for its percentiles (the counts: `final_stats()`)."""
    with open(f"{scraped.run.csv_prefix}_stats.csv", newline="") as f:
        return {(r["Type"], r["Name"]): r for r in csv.DictReader(f) if r["Name"] != "Aggregated"}


def assert_scrapes_healthy(scraped: ScrapedRun, at: float) -> None:
    """While the exporter still serves: the target is up, and no scrape failed since the exporter started."""
    prom = scraped.prom
    assert prom.value('up{job="locust"}', at) == 1
    # Scrapes fail until locust serves; after that, none may fail (nor exceed the scrape timeout).
    [series] = prom.query('up{job="locust"}[5m]', at)
    ups = [float(v) for _, v in series["values"]]
    assert ups == sorted(ups) and ups[-1] == 1, ups
    [target] = prom.targets()
    assert (target["health"], target["lastError"]) == ("up", ""), target
    samples = prom.value('scrape_samples_scraped{job="locust"}', at)
    assert samples > 0
    # After the stop the set of series is fixed: Prometheus ingested exactly the samples the exporter serves.
    assert samples == len(scraped.run.scrape(openmetrics=True))


def check_request_rate(scraped: ScrapedRun, at: float) -> None:
    prom = scraped.prom
    stats = scraped.run.final_stats()
    assert stats and all(failures == 0 for _, failures in stats.values()), stats
    requests = sum(n for (method, _), (n, _) in stats.items() if method == "GET")
    assert requests > 0

    # Exact: the last value Prometheus scraped is Locust's own count.
    last, low, high = increase_bounds(prom, GET_OK, at)
    assert last == prom.value(f"sum({GET_OK})", at) == requests, (last, requests, prom.query(f"{GET_OK}[5m]", at))
    # The custom-metrics example's counter is incremented once per GET /; its gauge is set to the user count.
    assert prom.value("my_custom_counter_total", at) == stats[("GET", "/")][0]
    assert prom.value("max_over_time(my_custom_gauge[5m])", at) == 10

    # rate()[5m] x 300 s is Prometheus's estimate of the requests in the window, which holds the whole test.
    [rate] = prom.query(RATE_QUERY, at)
    estimate = float(rate["value"][1]) * 300
    assert 0 < low <= estimate <= high, (low, estimate, high, requests)
    n = prom.value(f"min(count_over_time({GET_OK}[5m]))", at)
    assert n >= 10, n  # enough samples for the bounds to be tight


def check_about_p95(scraped: ScrapedRun, at: float) -> None:
    prom = scraped.prom
    stats = scraped.run.final_stats()
    assert all(failures == 0 for _, failures in stats.values()), stats
    requests, _ = stats[("GET", "/about/")]
    assert requests >= 20, stats

    [result] = prom.query(P95_QUERY, at)
    assert result["metric"] == {"name": "/about/"}
    estimate = float(result["value"][1])
    assert math.isfinite(estimate) and estimate > 0, result

    # The final cumulative counts: the p95 lies in the first bucket whose count reaches 0.95 x _count.
    buckets = prom.query('sum by (le) (locust_request_duration_seconds_bucket{name="/about/"})', at)
    counts = sorted((float(r["metric"]["le"]), float(r["value"][1])) for r in buckets)
    bounds = [le for le, _ in counts]
    assert bounds[-1] == math.inf and counts[-1][1] == requests, counts
    p95_bucket = next(i for i, (_, count) in enumerate(counts) if count >= 0.95 * counts[-1][1])

    def bucket_of(seconds: float) -> int:
        return next(i for i, upper in enumerate(bounds) if seconds <= upper)

    # Locust's p95 is rounded (whole ms below 100 ms, 2 significant digits above), which can move it across a
    # bucket boundary: one bucket either way.
    locust_p95 = float(csv_rows(scraped)[("GET", "/about/")]["95%"]) / 1000
    assert abs(bucket_of(locust_p95) - p95_bucket) <= 1, (locust_p95, counts)
    # The README query's answer is the quantile of the buckets of its rate(), as Prometheus stored them.
    q, inner = split_quantile_query(P95_QUERY)
    assert estimate == pytest.approx(classic_quantile(q, classic_buckets(prom, inner, at, name="/about/")), rel=1e-12)


def test_readme_queries_through_prometheus_match_locust(run_locust, prometheus):
    # The README's rate query on the custom-metrics example and its p95 query on the plain one (the only one
    # with /about/), side by side to halve the wall time. Users spawn at 2/s so that a request series' first
    # sample, which rate() cannot count, holds few requests.
    custom, plain = scrape_runs(
        run_locust, prometheus,
        (EXAMPLE_CUSTOM, dict(users=10, rate=2, run_time=30)),
        (EXAMPLE_PLAIN, dict(users=20, rate=2, run_time=30)),
    )  # fmt: skip
    at = {}
    for name, scraped in (("custom", custom), ("plain", plain)):
        at[name] = final_scrape(scraped)
        assert_scrapes_healthy(scraped, at[name])
    # Queries at the saved times keep seeing the final values once the exporters have quit.
    assert custom.run.finish() == [0], custom.run.output()
    assert plain.run.finish() == [0], plain.run.output()
    check_request_rate(custom, at["custom"])
    check_about_p95(plain, at["plain"])
