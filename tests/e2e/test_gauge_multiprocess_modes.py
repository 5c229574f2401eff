"""Gauge multiprocess modes: worker processes report a gauge, a master process merges their reports."""

from __future__ import annotations

import json
import subprocess
import sys

from support.scrape import samples_of

MODES = ("all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent", "livemostrecent")

# Run in processes of their own, as Locust's worker and master are: each has its own registry.
WORKER = """
import sys
from locust_prometheus_exporter import REGISTRY, Gauge
for mode in sys.argv[2:]:
    Gauge(f"mode_{mode}", "h", multiprocess_mode=mode).set(float(sys.argv[1]))
sys.stdout.write(REGISTRY.take_report().hex())
"""
MASTER = """
import json, sys
from locust_prometheus_exporter import REGISTRY, Gauge
reports, live, modes = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3:]
for mode in modes:
    Gauge(f"mode_{mode}", "h", multiprocess_mode=mode)  # defined, never set, as on a master
for worker, blob in reports:
    REGISTRY.apply_report(worker, bytes.fromhex(blob))
REGISTRY.set_live_workers(live)
sys.stdout.write(REGISTRY.render().decode())
"""


def python(script: str, *args: str) -> str:
    r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_gauge_multiprocess_modes_combine_the_workers_reports():
    """Two worker processes report a gauge in every mode; a master process merges their reports."""
    values = {"w1": 7.0, "w2": 2.0}
    # w1 sets its value first, and the master gets w2's report first: `mostrecent` goes by when the master
    # received a value (w1's, last), not by the workers' clocks, which need not agree.
    reports = {worker: python(WORKER, str(value), *MODES) for worker, value in values.items()}
    arrival = json.dumps([("w2", reports["w2"]), ("w1", reports["w1"])])
    pick = {"sum": sum, "max": max, "min": min, "mostrecent": lambda vs: vs[0]}
    # Each live mode differs from its plain mode when one worker or the other is missing.
    for live in (["w1", "w2"], ["w2"], ["w1"]):
        samples = samples_of(python(MASTER, arrival, json.dumps(live), *MODES))
        for mode in MODES:
            workers = [w for w in values if w in live or not mode.startswith("live")]
            got = {dict(labels).get("worker"): v for (n, labels), v in samples.items() if n == f"mode_{mode}"}
            if mode.endswith("all"):
                assert got == {w: values[w] for w in workers}, (mode, live, got)
            else:
                assert got == {None: pick[mode.removeprefix("live")]([values[w] for w in workers])}, (mode, live, got)
