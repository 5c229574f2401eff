"""The example Grafana dashboard: importable as is, and every query of every panel returns data from a real
Prometheus that scraped a real distributed locust run."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from typing import Any

from conftest import EXAMPLES
from prometheus_server import PrometheusServer, final_scrape, prometheus, scrape_runs  # noqa: F401  (fixture)

DASHBOARD = EXAMPLES / "grafana" / "locust-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

# Grafana's built-in variables, as the test sets them. At the evaluation time, just after the test stopped,
# a 1 m window holds the whole run (Grafana would use max($__interval + scrape interval, 4 x scrape interval)).
BUILTINS = {"__rate_interval": "1m", "__interval": "1s", "__range": "1m"}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")

# The seed custom-metrics locustfile, imported unchanged, plus users whose requests fail, so that the
# failures panel has data too.
LOCUSTFILE = """
from locust import HttpUser, constant, task

from locustfile_custom_metrics import WebsiteUser, exporter  # noqa: F401  (examples/, on PYTHONPATH)


class FailingUser(HttpUser):
    wait_time = constant(1)

    @task
    def missing(self):
        self.client.get("/missing")  # 404: an HTTPError failure
"""


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_is_importable():
    d = load()
    inputs = [(i["name"], i["type"], i["pluginId"]) for i in d["__inputs"]]
    assert inputs == [("DS_PROMETHEUS", "datasource", "prometheus")]
    # Every ${DS_...} placeholder is one Grafana asks for on import.
    assert set(re.findall(r"\$\{(DS_\w+)\}", DASHBOARD.read_text())) == {"DS_PROMETHEUS"}
    required = {(r["type"], r["id"]) for r in d["__requires"]}
    assert {("grafana", "grafana"), ("datasource", "prometheus")} <= required
    assert d["id"] is None and d["uid"] and d["title"] and d["schemaVersion"] >= 36

    panels = list(all_panels(d))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), ids
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, f"{p['title']} overlaps another panel"
        cells |= area
        if p["type"] == "row":
            continue
        assert ("panel", p["type"]) in required, p["type"]
        assert p["datasource"] == DATASOURCE, p["title"]
        assert p["targets"] and len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE and t["expr"].strip(), (p["title"], t)

    variables = d["templating"]["list"]
    for v in variables:
        assert v["type"] == "query" and v["datasource"] == DATASOURCE, v["name"]
    assert {v["name"] for v in variables} >= {"job"}
    for p in panels:
        if "repeat" in p:
            repeated = next(v for v in variables if v["name"] == p["repeat"])
            assert repeated["multi"] or repeated["includeAll"], "Grafana repeats only multi-value variables"


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
        values = [v for v in values if re.search(pattern.group(1), v)]
    return values


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


def test_every_panel_query_returns_data(run_locust, prometheus, tmp_path):  # noqa: F811
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    pythonpath = os.pathsep.join(filter(None, [str(EXAMPLES), os.environ.get("PYTHONPATH")]))
    # A master with 2 workers, so that locust_workers (served by a master only) has data.
    [scraped] = scrape_runs(run_locust, prometheus, (locustfile, dict(
        users=10, rate=10, run_time=15, workers=2, autoquit=6, env={"PYTHONPATH": pythonpath},
        extra=("--exit-code-on-error", "0"),  # the failures are wanted
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
    # The custom metrics of the seed file, and nothing of the exporter's or Prometheus's own.
    assert sorted(options["custom_metric"]) == ["my_custom_counter_total", "my_custom_gauge"]

    checked = 0
    for panel in all_panels(d):
        if panel["type"] == "row":
            continue
        # A repeated panel is one panel per value of its variable.
        repeat = panel.get("repeat")
        clones = [{**bound, repeat: value} for value in options[repeat]] if repeat else [bound]
        for target in panel["targets"]:
            results = []
            for values in clones:
                query = substitute(target["expr"], values)
                results.append(prom.query(query, at))  # raises on any query error
            # Each query returns data, for at least one value of the repeated variable (a counter's rate has
            # no data for a gauge).
            assert any(has_data(r) for r in results), (panel["title"], target["expr"], results)
            checked += 1
    assert checked >= 12
