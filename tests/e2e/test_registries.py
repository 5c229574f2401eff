"""Registries across processes: a forked child starts each from zero, and a master puts each worker's report
into the registry it came from."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from support.locust_run import assert_exact
from support.paths import LOCUSTFILES
from support.scrape import http_get, samples_of, total

# The default registry, one an exporter serves and one none does, each with a value; a fork in between.
FORK = """
import json, os
from locust_prometheus_exporter import REGISTRY, CollectorRegistry, Counter, PrometheusExporter

registries = [REGISTRY, CollectorRegistry(), CollectorRegistry()]
counters = [Counter("forked", "h", registry=r) for r in registries]
for i, counter in enumerate(counters):
    counter.inc(i + 1)
PrometheusExporter("127.0.0.1", 0, registry=registries[1])  # as a locustfile does: this installs the fork hooks
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    counters[2].inc(10)
    os.write(write, json.dumps([r.render().decode() for r in registries]).encode())
    os._exit(0)
os.close(write)
child = json.loads(os.read(read, 1 << 20))
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
print(json.dumps({"child": child, "parent": [r.render().decode() for r in registries]}))
"""


def test_a_forked_child_starts_every_registry_from_zero():
    done = subprocess.run([sys.executable, "-c", FORK], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    values = {side: [total(samples_of(text), "forked_total") for text in texts] for side, texts in got.items()}
    # What the parent recorded is not the child's: reporting it again would count it twice.
    assert values == {"child": [0, 0, 10], "parent": [1, 2, 3]}


TWO_REGISTRIES = LOCUSTFILES / "two_registries.py"


def test_workers_reports_reach_each_registry_on_the_master(run_locust):
    """Two exporters of two registries on the master each serve Locust's exact statistics, and the custom
    counter of their own registry, summed over the workers."""
    run = run_locust(TWO_REGISTRIES, users=4, rate=4, run_time=4, workers=2)
    own = run.wait_stopped()
    ports = re.findall(r"Prometheus metrics on http://127\.0\.0\.1:(\d+)/metrics", run.logs[0].read_text())
    assert len(ports) == 2 and int(ports[0]) == run.metrics_port, ports
    status, _, body = http_get(f"http://127.0.0.1:{ports[1]}/metrics")
    assert status == 200
    default = samples_of(body.decode())
    assert run.finish() == [0, 0, 0], run.output()
    stats = run.final_stats()
    for samples, per_request in ((own, 1), (default, 2)):
        assert_exact(samples, stats)
        assert total(samples, "tasks_total", task="index") == per_request * stats[("GET", "/")][0]
        assert total(samples, "tasks_total", task="about") == per_request * stats[("GET", "/about/")][0]
