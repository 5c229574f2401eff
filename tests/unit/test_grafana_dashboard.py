"""The example Grafana dashboard is importable as is."""

from __future__ import annotations

import re
from typing import Any

from support.dashboard import DASHBOARD, all_panels, load

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


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


def panel(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in all_panels(dashboard) if p["title"] == title)
