"""The example Grafana dashboard, as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from support.paths import EXAMPLES

DASHBOARD = EXAMPLES / "grafana" / "locust-dashboard.json"


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])
