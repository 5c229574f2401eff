"""The example Grafana dashboard: every query of every panel returns data from a real Prometheus that scraped
a real distributed locust run, and some panels agree with Locust's own statistics."""

from __future__ import annotations

import math
import os
import re
from typing import Any

import pytest
from support.dashboard import all_panels, load
from support.paths import EXAMPLES
from support.prometheus import PrometheusServer, final_scrape, increase_bounds, scrape_runs
from support.scrape import LINT

# Grafana's built-in variables, as the test sets them. At the evaluation time, just after the test stopped,
# a 1 m window holds the whole run (Grafana would use max($__interval + scrape interval, 4 x scrape interval)).
BUILTINS = {"__rate_interval": "1m", "__interval": "1s", "__range": "1m"}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")

# examples/locustfile_custom_metrics.py (a counter and a gauge), imported unchanged, plus users whose requests
# fail, so that the failure panels have data too, and time them with a custom histogram; they also post a body.
LOCUSTFILE = """
import locust.runners
from locust import HttpUser, constant, task

from locust_prometheus_exporter import Histogram
from locustfile_custom_metrics import WebsiteUser, exporter  # noqa: F401  (examples/, on PYTHONPATH)

missing_seconds = Histogram("my_missing_seconds", "Time of a failing request")

# Locust measures its CPU and memory every 10 s, the first after 10 s: every second here, so that the
# Load generator panels have data in a short run.
locust.runners.CPU_MONITOR_INTERVAL = 1.0


class FailingUser(HttpUser):
    wait_time = constant(1)

    @task
    def missing(self):
        with missing_seconds.time():
            self.client.get("/missing")  # 404: an HTTPError failure
        self.client.post("/echo", data=b"x" * 10)  # request bytes for the bytes panel
        # A failure on a 200 (CatchResponseError), and one with no HTTP answer (status 0): nothing listens on
        # port 1 of the loopback.
        with self.client.get("/", catch_response=True, name="caught") as r:
            r.failure("rejected by the test")
        self.client.get("http://127.0.0.1:1/nothing", name="refused")
"""

#: The failing requests of the locustfile: name -> the exception type of each.
FAILING = {"/missing": "HTTPError", "caught": "CatchResponseError", "refused": "ConnectionRefusedError"}


def substitute(text: str, values: dict[str, str]) -> str:
    """Grafana's variable interpolation; an unknown variable fails the test."""

    def value(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        assert name in values, f"undefined variable ${name} in {text!r}"
        return values[name]

    return VARIABLE.sub(value, text)


def variable_values(prom: PrometheusServer, variable: dict[str, Any], bound: dict[str, str], at: float) -> list[str]:
    """What Grafana offers for a `label_values([selector,] label)` query variable, filtered by its regex."""
    m = re.fullmatch(r"label_values\((?:(.+),\s*)?(\w+)\)", variable["definition"])
    assert m, variable["definition"]
    selector, label = m.groups()
    params: dict[str, str | float] = {"start": at - 300, "end": at}
    if selector:
        params["match[]"] = substitute(selector, bound)
    values = prom.api(f"label/{label}/values", **params)
    if variable.get("regex"):
        pattern = re.fullmatch(r"/(.*)/\w*", variable["regex"])
        assert pattern, variable["regex"]
        # As Grafana: the values the regex matches, or, when it has a group, what the group captures.
        matches = [m for m in map(re.compile(pattern.group(1)).search, values) if m]
        values = [m.group(1) if m.groups() else m.group(0) for m in matches]
    return values


def has_data(result: list[dict[str, Any]]) -> bool:
    """Some point of some series is a finite number other than 0 (a panel of zeros shows nothing)."""
    return any(math.isfinite(float(v)) and float(v) != 0 for r in result for _, v in r["values"])


def panel(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in all_panels(dashboard) if p["title"] == title)


def evaluate(prom: PrometheusServer, target: dict[str, Any], bound: dict[str, str], at: float) -> dict[str, float]:
    """A panel query at `at`, with $__rate_interval spanning the whole run: legend -> value."""
    query = substitute(target["expr"], {**bound, "__rate_interval": "5m"})
    legend = target["legendFormat"]
    return {
        re.sub(r"\{\{(\w+)\}\}", lambda m, labels=r["metric"]: labels.get(m.group(1), ""), legend): float(r["value"][1])
        for r in prom.query(query, at)
    }


def test_every_panel_query_returns_data(run_locust, prometheus, tmp_path):
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    pythonpath = os.pathsep.join(filter(None, [str(EXAMPLES), os.environ.get("PYTHONPATH")]))
    # A master with 2 workers, so that locust_workers (served by a master only) has data.
    [scraped] = scrape_runs(run_locust, prometheus, (locustfile, dict(
        users=10, rate=10, run_time=15, workers=2, env={"PYTHONPATH": pythonpath},
        extra=("--exit-code-on-error", "0"),  # the failures are wanted
        lint=LINT["locustfile_custom_metrics.py"],
    )))  # fmt: skip
    at = final_scrape(scraped)
    assert scraped.run.finish() == [0, 0, 0], scraped.run.output()
    prom = scraped.prom

    d = load()
    # Variables in order (later ones may use earlier ones), bound as Grafana would: the job to "locust".
    bound = dict(BUILTINS)
    options: dict[str, list[str]] = {}
    for v in d["templating"]["list"]:
        options[v["name"]] = variable_values(prom, v, bound, at)
        # A multi-value variable outside a repeat reads as Grafana's regex of all values, (a|b).
        bound[v["name"]] = "locust" if v["name"] == "job" else f"({'|'.join(map(re.escape, options[v['name']]))})"
    assert "locust" in options["job"]
    # The custom metrics of the locustfile by kind, and nothing of the exporter's or Prometheus's own.
    assert options["custom_counter"] == ["my_custom_counter_total"]
    assert options["custom_gauge"] == ["my_custom_gauge"]
    assert options["custom_histogram"] == ["my_missing_seconds"]

    checked = 0
    for p in all_panels(d):
        if p["type"] == "row":
            continue
        # A repeated panel is one panel per value of its variable.
        repeat = p.get("repeat")
        clones = [{**bound, repeat: value} for value in options[repeat]] if repeat else [bound]
        for target in p["targets"]:
            # Each query, over the run as Grafana plots it, has data for each value of the repeated variable.
            for values in clones:
                result = prom.query_range(substitute(target["expr"], values), at - 300, at)  # raises on errors
                assert has_data(result), (p["title"], target["expr"], values, result)
            checked += 1
    assert checked >= 19

    # Some panels against Locust's own statistics.
    stats = scraped.run.final_stats()
    requests = sum(r for r, _ in stats.values())
    failures = sum(f for _, f in stats.values())
    assert all(stats[("GET", name)][1] == stats[("GET", name)][0] > 0 for name in FAILING), stats
    assert failures == sum(stats[("GET", name)][1] for name in FAILING)
    # Requests/s and failures/s, times the window: Prometheus's estimate of the run's requests and failures.
    every, failed = 'locust_requests_total{job="locust"}', 'locust_requests_total{job="locust", exception!=""}'
    for title, selector, count in (("Requests/s by name and status", every, requests),
                                   ("Failures/s by exception", failed, failures)):  # fmt: skip
        last, low, high = increase_bounds(prom, selector, at)
        assert last == count, (title, last, count)
        estimate = sum(evaluate(prom, panel(d, title)["targets"][0], bound, at).values()) * 300
        assert low <= estimate <= high, (title, low, estimate, high)
    assert evaluate(prom, panel(d, "Failures/s by exception")["targets"][0], bound, at).keys() == set(FAILING.values())
    # The failure ratio: 100 % for the failing user's requests, 0 % for the others, overall between the bounds.
    ratio = panel(d, "Failure ratio by method and name")["targets"]
    assert evaluate(prom, ratio[0], bound, at) == pytest.approx(
        {f"{method} {name}": (100.0 if f else 0.0) for (method, name), (_, f) in stats.items()}
    )
    _, failed_low, failed_high = increase_bounds(prom, failed, at)
    _, every_low, every_high = increase_bounds(prom, every, at)
    [overall] = evaluate(prom, ratio[1], bound, at).values()
    assert 100 * failed_low / every_high <= overall <= 100 * failed_high / every_low, overall
    # Two workers, whatever their state.
    assert sum(evaluate(prom, panel(d, "Workers by state")["targets"][0], bound, at).values()) == 2
