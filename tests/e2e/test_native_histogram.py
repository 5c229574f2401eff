"""Native histograms through a real Prometheus 2.42 with the feature on, beside one without it.

Prometheus 2.42 keeps only the native form of a histogram it scrapes as such (`scrape_classic_histograms`
came later), so the classic buckets are checked on the other server, which scrapes the text format.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.paths import EXAMPLES
from support.prometheus import (
    PrometheusServer,
    ScrapedRun,
    classic_buckets,
    classic_quantile,
    final_scrape,
    native_buckets,
    native_quantile,
    split_quantile_query,
    wait_scraping,
)

SPREAD = Path(__file__).parent / "locustfiles" / "spread.py"
SLEEP = 'name="/sleep"'
QUANTILES = (0.5, 0.95, 0.99)
DASHBOARD = EXAMPLES / "grafana" / "locust-dashboard.json"


def dashboard_quantile_queries() -> dict[float, str]:
    """The built-in percentile panel's queries by quantile, with Grafana's variables set as at the run's end."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    [panel] = [p for p in panels if p["title"].startswith("Response time p50 / p95 / p99")]
    queries = {}
    for target in panel["targets"]:
        expr = target["expr"].replace("$job", "locust").replace("$__rate_interval", "1m")
        queries[float(expr.removeprefix("histogram_quantile(").split(",")[0])] = expr
    return queries


def assert_buckets_exact(buckets: list[tuple[float, float, float]], values: list[float]) -> None:
    """Every bucket holds exactly the raw values in (lower, upper], and together they hold them all."""
    for lower, upper, count in buckets:
        assert count == sum(lower < v <= upper for v in values), (lower, upper, count)
    assert sum(b[2] for b in buckets) == len(values)


@pytest.mark.parametrize("workers", [0, 2], ids=["local", "2-workers"])
def test_native_buckets_exact_and_quantiles_as_prometheus_computes_them(run_locust, prometheus, tmp_path, workers):
    """Also through the master's merge of two workers' reports: exact, bucket by bucket. The quantiles Prometheus
    answers are those its buckets give (their accuracy against the raw times is a Rust test's, on 100,000)."""
    run = run_locust(SPREAD, autostart=False, workers=workers, env={"SPREAD_TIMES": str(tmp_path / "times")})
    run.terminate = True
    native = prometheus(run.metrics_port, flags=("--enable-feature=native-histograms",))
    plain = prometheus(run.metrics_port)
    for prom in (native, plain):
        wait_scraping(prom)
    run.swarm(30, 30, run_time=8, workers=workers)
    at = final_scrape(ScrapedRun(run, native))
    plain_at = final_scrape(ScrapedRun(run, plain))
    # One file per process that ran the test: the local one, or the master and each worker.
    files = 1 + workers
    run.wait_until(lambda: len(list(tmp_path.glob("times.*"))) == files, 10, "every process's times")
    texts = [f.read_text() for f in tmp_path.glob("times.*")]
    seconds = sorted(float(line) / 1000 for text in texts for line in text.split())
    assert len(seconds) >= 100, len(seconds)

    # Counters and gauges come through the protobuf exposition as through the text one.
    for prom, when in ((native, at), (plain, plain_at)):
        assert prom.value(f'sum(locust_requests_total{{method="GET", {SLEEP}}})', when) == len(seconds)
        assert prom.value("locust_users_running", when) == 0
    # The native histogram as Prometheus stored it: exact, bucket by bucket, at schema 3 (2^(1/8) apart).
    buckets = native_buckets(native, f"locust_request_duration_seconds{{{SLEEP}}}", at)
    assert_buckets_exact(buckets, seconds)
    assert all(abs(hi / lo - 2 ** (1 / 8)) < 1e-9 for lo, hi, _ in buckets), buckets
    # A custom one at schema 0 (powers of two).
    coarse = native_buckets(native, "spread_coarse_seconds", at)
    assert_buckets_exact(coarse, seconds)
    assert all(abs(hi / lo - 2) < 1e-9 for lo, hi, _ in coarse), coarse

    for q in QUANTILES:
        # From the exact buckets: the quantile interpolated in the bucket of the q x count-th time.
        got = native.value(f"histogram_quantile({q}, sum(locust_request_duration_seconds{{{SLEEP}}}))", at)
        assert got == pytest.approx(native_quantile(q, buckets), rel=1e-12), q
        # The dashboard's panel takes the native histogram where it is, the classic buckets elsewhere: each the
        # quantile of the rate()'s buckets.
        native_panel, classic_panel = dashboard_quantile_queries()[q].split(" or ")
        panels = ((native, at, native_panel, sleep_native), (plain, plain_at, classic_panel, sleep_classic))
        for prom, when, query, predict in panels:
            [answer] = [r for r in prom.query(dashboard_quantile_queries()[q], when) if r["metric"]["name"] == "/sleep"]
            assert float(answer["value"][1]) == pytest.approx(predict(prom, query, when), rel=1e-12), (q, query)
    # The classic buckets, as the text exposition serves them, count the same requests.
    classic_series = plain.query(f"locust_request_duration_seconds_bucket{{{SLEEP}}}", plain_at)
    by_le = {r["metric"]["le"]: float(r["value"][1]) for r in classic_series}
    assert by_le["+Inf"] == len(seconds)
    assert by_le["0.1"] == sum(v <= 0.1 for v in seconds)
    assert not plain.query(f"locust_request_duration_seconds{{{SLEEP}}}", plain_at), "no native series without it"
    assert run.finish() == [0] * (1 + workers), run.output()


def sleep_native(prom: PrometheusServer, query: str, at: float) -> float:
    """The quantile a panel's native query gives /sleep, from the buckets of its inner expression."""
    q, inner = split_quantile_query(query)
    return native_quantile(q, native_buckets(prom, inner, at, name="/sleep"))


def sleep_classic(prom: PrometheusServer, query: str, at: float) -> float:
    """The quantile a panel's classic query gives /sleep, from the buckets of its inner expression."""
    q, inner = split_quantile_query(query)
    return classic_quantile(q, classic_buckets(prom, inner, at, name="/sleep"))
