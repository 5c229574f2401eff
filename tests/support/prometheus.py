"""A real Prometheus server (Debian's `prometheus` binary) scraping the exporter, for tests.

The `prometheus` fixture (tests/e2e/conftest.py) yields ``start(scrape_port) -> PrometheusServer`` and stops every
server it started. `scrape_runs` and `final_scrape` drive a `run_locust` run scraped by such a server.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.locust_run import LocustRun
from support.process import ServerProcess

#: Scrape (and rule evaluation) interval of the generated config, in seconds. A scrape's timeout is at most
#: the interval: 2 s leaves a busy machine a margin that 1 s did not.
SCRAPE_INTERVAL = 2


class PrometheusError(AssertionError):
    """The HTTP API answered with an error (bad PromQL, ...)."""


class PrometheusServer(ServerProcess):
    """One `prometheus` process on 127.0.0.1 with its own data dir, scraping one target as job "locust"."""

    not_yet = (OSError, PrometheusError)

    def __init__(
        self,
        scrape_port: int,
        workdir: Path,
        binary: str = "prometheus",
        flags: tuple[str, ...] = (),
    ) -> None:
        self.target = f"127.0.0.1:{scrape_port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL}s",
                "scrape_timeout": f"{SCRAPE_INTERVAL}s",
                "evaluation_interval": f"{SCRAPE_INTERVAL}s",
            },
            "scrape_configs": [{"job_name": "locust", "static_configs": [{"targets": [self.target]}]}],
        }
        # JSON is YAML: no YAML library needed.
        (workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))
        cmd = [
            shutil.which(binary) or binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            "--web.listen-address=127.0.0.1:0",  # the port it picks is in its log
            *flags,
        ]
        super().__init__(cmd, workdir / "prometheus.log")

    # --- lifecycle

    # --- HTTP API

    def api(self, path: str, **params: str | float) -> Any:
        """`data` of a GET /api/v1/<path>; raises PrometheusError when the API reports an error."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            # 400/422/503 carry a JSON body with errorType and error.
            try:
                body = json.load(e)
            except ValueError:
                body = {"errorType": f"HTTP {e.code}", "error": "not JSON"}
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Results of an instant query (at `at`, a Unix time, or now): vectors and matrices as lists."""
        params: dict[str, str | float] = {"query": promql}
        if at is not None:
            params["time"] = at
        data = self.api("query", **params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_range(self, promql: str, start: float, end: float) -> list[dict[str, Any]]:
        """Results of a range query from `start` to `end`, one point per scrape interval, as Grafana plots."""
        data = self.api("query_range", query=promql, start=start, end=end, step=SCRAPE_INTERVAL)
        return data["result"]

    def value(self, promql: str, at: float | None = None) -> float:
        """The single value of an instant query that must return exactly one sample."""
        result = self.query(promql, at)
        assert len(result) == 1, f"{promql}: expected one series, got {result}"
        return float(result[0]["value"][1])

    def targets(self) -> list[dict[str, Any]]:
        """The active targets, as /api/v1/targets describes them (health, lastError, lastScrape...)."""
        return self.api("targets", state="active")["activeTargets"]


def increase_bounds(prom: PrometheusServer, selector: str, at: float, window: str = "5m") -> tuple[float, float, float]:
    """(last, low, high) for the counters `selector` picks, in a `window` holding their whole life at `at`:
    the sum of their last values (which a test compares with Locust's count), and bounds of the sum of
    ``rate(selector[window])`` x window (Prometheus's estimate of their increase).

    rate() cannot see what a series counted in its first sample (it appears with its first request, already
    above 0), and extrapolates the increase it saw, last - first, beyond the first and last samples by at most
    1.1 average sample intervals at each end (Prometheus's extrapolatedRate): with n samples,
    seen <= estimate <= seen * (1 + 2.2 / (n - 1)). Every figure comes from Prometheus's own data.
    """

    def by_series(promql: str) -> dict[str, float]:
        results = prom.query(promql, at)
        return {
            json.dumps({k: v for k, v in r["metric"].items() if k != "__name__"}, sort_keys=True): float(r["value"][1])
            for r in results
        }

    last = by_series(selector)
    first = by_series(f"min_over_time({selector}[{window}])")  # a counter's minimum is its first sample
    samples = by_series(f"count_over_time({selector}[{window}])")
    assert last and last.keys() == first.keys() == samples.keys(), (last, first, samples)
    low = sum(last[k] - first[k] for k in last)
    high = sum((last[k] - first[k]) * (1 + 2.2 / (samples[k] - 1)) for k in last if samples[k] > 1)
    return sum(last.values()), low - 1e-9, high + 1e-9


@dataclass
class ScrapedRun:
    """A locust run and the Prometheus scraping its exporter."""

    run: LocustRun
    prom: PrometheusServer


def wait_scraping(prom: PrometheusServer) -> None:
    """Until `prom` scraped its target successfully."""
    prom.wait_until(lambda: any(t["health"] == "up" for t in prom.targets()), 30, "a successful scrape")


def scrape_runs(run_locust: Callable[..., LocustRun], start: Callable[[int], PrometheusServer],
                *runs: tuple[Path, dict[str, Any]]) -> list[ScrapedRun]:  # fmt: skip
    """Per (locustfile, run_locust kwargs, with `users`, `rate` and `run_time`): a locust run, idle, its exporter
    on the port it bound; then a Prometheus scraping it; once each scrapes, the tests, started through the web UI.

    Prometheus scrapes only some seconds after it is ready (it batches target discovery). Scraping before the
    test starts, it scrapes a request series within a scrape interval of its first request, so rate() misses
    few requests. The runs start side by side; `finish()` ends them with SIGTERM.
    """
    scraped, tests = [], []
    for locustfile, kwargs in runs:
        test = {k: kwargs[k] for k in ("users", "rate", "run_time") if k in kwargs}
        options = {k: v for k, v in kwargs.items() if k not in test}
        run = run_locust(locustfile, autostart=False, **options)
        run.terminate = True
        scraped.append(ScrapedRun(run, start(run.metrics_port)))
        tests.append({**test, "workers": options.get("expect_workers") or options.get("workers", 0)})
    for s in scraped:
        wait_scraping(s.prom)
    for s, test in zip(scraped, tests, strict=True):
        s.run.swarm(test.get("users", 4), test.get("rate", 4), test.get("run_time", 6), test["workers"])
    return scraped


def scraped_since(prom: PrometheusServer, since: float, timeout: float = 15) -> float:
    """Waits for a successful scrape of the target that started after the Unix time `since`; returns a Unix time at
    which instant queries see what it scraped."""

    def scraped() -> bool:
        # The start of the last scrape, if it succeeded. timestamp() gives a sample's time only when applied to a
        # selector directly (of `up == 1` it gives the evaluation time), hence the `and`.
        result = prom.query('timestamp(up{job="locust"}) and up{job="locust"} == 1')
        return bool(result) and float(result[0]["value"][1]) > since

    prom.wait_until(scraped, timeout, "a scrape after the test stopped")
    return time.time()


def final_scrape(scraped: ScrapedRun, timeout: float = 15) -> float:
    """Waits for the test to stop, then for a successful scrape that started afterwards.

    Returns a Unix time at which instant queries see the final values. Call it soon after the stop:
    the exporter serves only for the run's --autoquit seconds.
    """
    scraped.run.wait_stopped()
    return scraped_since(scraped.prom, time.time(), timeout)


# --- histogram_quantile, as Prometheus 2.42 computes it (promql/quantile.go), from the buckets it answers with


def native_buckets(prom: PrometheusServer, promql: str, at: float, **labels: str) -> list[tuple[float, float, float]]:
    """(lower, upper, count) of the one native histogram `promql` gives (of those, the one with `labels`), as
    Prometheus' API gives them."""
    [result] = [r for r in prom.query(promql, at) if labels.items() <= r["metric"].items()]
    assert "histogram" in result, f"{promql} is not a native histogram: {result}"
    return [(float(lo), float(hi), float(n)) for _, lo, hi, n in result["histogram"][1]["buckets"]]


def native_quantile(q: float, buckets: list[tuple[float, float, float]]) -> float:
    """`histogram_quantile(q, h)` of a native histogram of positive values with these buckets: the first bucket
    whose cumulative count reaches q x count, interpolated linearly inside it."""
    total = sum(n for _, _, n in buckets)
    rank, count = q * total, 0.0
    for lower, upper, n in buckets:  # noqa: B007 (the bucket the loop stops at)
        count += n
        if count >= rank:
            break
    return lower + (upper - lower) * ((rank - (count - n)) / n)


def classic_buckets(prom: PrometheusServer, promql: str, at: float, **labels: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the classic buckets `promql` gives with `labels` (one histogram)."""
    results = [r for r in prom.query(promql, at) if labels.items() <= r["metric"].items()]
    return sorted((float(r["metric"]["le"]), float(r["value"][1])) for r in results)


def classic_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """`histogram_quantile(q, buckets)` of classic cumulative buckets sorted by upper bound (the last +Inf): counts
    made monotonic, then the first bucket whose count reaches q x the +Inf count, interpolated linearly inside
    it (from 0 for the first), or the highest finite bound when that bucket is +Inf's."""
    counts = [max(n for _, n in buckets[: i + 1]) for i in range(len(buckets))]
    rank = q * counts[-1]
    b = next(i for i in range(len(buckets) - 1) if counts[i] >= rank) if counts[-2] >= rank else len(buckets) - 1
    if b == len(buckets) - 1:
        return buckets[-2][0]
    start, below = (buckets[b - 1][0], counts[b - 1]) if b else (0.0, 0.0)
    return start + (buckets[b][0] - start) * ((rank - below) / (counts[b] - below))


def split_quantile_query(promql: str) -> tuple[float, str]:
    """(q, the inner expression) of ``histogram_quantile(q, inner)``."""
    found = re.fullmatch(r"\s*histogram_quantile\(([0-9.]+),\s*(.*)\)\s*", promql, re.DOTALL)
    assert found, promql
    return float(found.group(1)), found.group(2)
