"""Native histograms through a real Prometheus 2.42 with the feature on, beside one without it.

Prometheus 2.42 keeps only the native form of a histogram it scrapes as such (`scrape_classic_histograms`
came later), so the classic buckets are checked on the other server, which scrapes the text format.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.paths import EXAMPLES
from support.prometheus import PrometheusServer, ScrapedRun, final_scrape
from support.scrape import free_port

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


def exact_quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    pos = q * (len(sorted_values) - 1)
    i = int(pos)
    upper = sorted_values[min(i + 1, len(sorted_values) - 1)]
    return sorted_values[i] + (upper - sorted_values[i]) * (pos - i)


def native_buckets(prom: PrometheusServer, promql: str, at: float) -> list[tuple[float, float, float]]:
    """(lower, upper, count) of the one native histogram `promql` selects, as Prometheus' API gives them."""
    [result] = prom.query(promql, at)
    assert "histogram" in result, f"{promql} is not a native histogram: {result}"
    return [(float(lo), float(hi), float(n)) for _, lo, hi, n in result["histogram"][1]["buckets"]]


def assert_buckets_exact(buckets: list[tuple[float, float, float]], values: list[float]) -> None:
    """Every bucket holds exactly the raw values in (lower, upper], and together they hold them all."""
    for lower, upper, count in buckets:
        assert count == sum(lower < v <= upper for v in values), (lower, upper, count)
    assert sum(b[2] for b in buckets) == len(values)


@pytest.mark.parametrize("workers", [0, 2], ids=["local", "2-workers"])
def test_native_quantiles_within_5_percent_and_classic_queries_unchanged(run_locust, prometheus, tmp_path, workers):
    """Also through the master's merge of two workers' reports: exact, bucket by bucket."""
    port = free_port()
    native = prometheus(port, flags=("--enable-feature=native-histograms",))
    plain = prometheus(port)
    for prom in (native, plain):
        prom.wait_until(
            lambda prom=prom: any(not t["lastScrape"].startswith("0001-") for t in prom.targets()), 30, "a scrape"
        )
    times_prefix = tmp_path / "times"
    run = run_locust(
        SPREAD, users=30, rate=30, run_time=24, autoquit=30, workers=workers,
        extra=("--prometheus-port", str(port)), env={"SPREAD_TIMES": str(times_prefix)},
    )  # fmt: skip
    run.metrics_port = port
    at = final_scrape(ScrapedRun(run, native))
    plain_at = final_scrape(ScrapedRun(run, plain))
    # One file per process that ran the test: the local one, or the master and each worker.
    files = 1 + workers
    deadline = time.monotonic() + 10
    while len(list(tmp_path.glob("times.*"))) < files and time.monotonic() < deadline:
        time.sleep(0.2)
    texts = [f.read_text() for f in tmp_path.glob("times.*")]
    assert len(texts) == files, texts
    seconds = sorted(float(line) / 1000 for text in texts for line in text.split())
    assert len(seconds) >= 1000, len(seconds)

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

    classic_query = "histogram_quantile({q}, sum by (le) (locust_request_duration_seconds_bucket{{{s}}}))"
    rows = []
    for q in QUANTILES:
        exact = exact_quantile(seconds, q)
        got = native.value(f"histogram_quantile({q}, sum(locust_request_duration_seconds{{{SLEEP}}}))", at)
        classic = plain.value(classic_query.format(q=q, s=SLEEP), plain_at)
        rows.append((q, exact, got, classic))
        assert abs(got / exact - 1) <= 0.05, (q, got, exact)
        # The dashboard's panel takes the native histogram where it is, the classic buckets elsewhere.
        panel = dashboard_quantile_queries()[q]
        [native_panel] = [r for r in native.query(panel, at) if r["metric"]["name"] == "/sleep"]
        assert abs(float(native_panel["value"][1]) / exact - 1) <= 0.05, (q, native_panel, exact)
        [plain_panel] = [r for r in plain.query(panel, plain_at) if r["metric"]["name"] == "/sleep"]
        assert abs(float(plain_panel["value"][1]) / classic - 1) < 0.1, (q, plain_panel, classic)
    print(f"\n{len(seconds)} requests\nquantile  exact ms  native ms (error)  classic ms (error)")
    for q, exact, got, classic in rows:
        print(
            f"p{q * 100:<7g} {exact * 1e3:9.2f} {got * 1e3:9.2f} ({got / exact - 1:+6.1%})"
            f" {classic * 1e3:9.2f} ({classic / exact - 1:+6.1%})"
        )
    # The classic buckets, as the text exposition serves them, count the same requests.
    classic_series = plain.query(f"locust_request_duration_seconds_bucket{{{SLEEP}}}", plain_at)
    by_le = {r["metric"]["le"]: float(r["value"][1]) for r in classic_series}
    assert by_le["+Inf"] == len(seconds)
    assert by_le["0.1"] == sum(v <= 0.1 for v in seconds)
    assert not plain.query(f"locust_request_duration_seconds{{{SLEEP}}}", plain_at), "no native series without it"
    run.finish()
