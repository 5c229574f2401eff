"""The end-to-end load: FastHttpUser, no wait, 10 request names, against run.py's nginx.

BENCH_EXPORTER picks the variant (none, project, reference); BENCH_METRICS_PORT is where it serves /metrics.
Both exporters are constructed at import, as their users do, and start serving on Locust's init.
"""

import json
import os
import random
import time

from locust import FastHttpUser, constant, events, task

VARIANT = os.environ["BENCH_EXPORTER"]
PORT = int(os.environ.get("BENCH_METRICS_PORT", "0"))

if VARIANT == "project":
    from locust_prometheus_exporter import PrometheusExporter

    exporter = PrometheusExporter("127.0.0.1", PORT)
elif VARIANT == "reference":
    from reference import ReferenceExporter

    exporter = ReferenceExporter("127.0.0.1", PORT)

PATHS = [f"/api/items/{i}" for i in range(10)]

# Locust's CPU time per request in the steady state: unlike req/s, it does not move when the machine
# gives the process less of a core. Spawning complete starts it (--reset-stats zeroes the counts there),
# test_stopping ends it.
CPU_FILE = os.environ.get("BENCH_CPU_FILE")
_cpu_start: list[float] = []


@events.spawning_complete.add_listener
def _steady(**_kw) -> None:
    _cpu_start.append(time.process_time())


@events.test_stopping.add_listener
def _cpu_per_request(environment, **_kw) -> None:
    if CPU_FILE and _cpu_start:
        requests = environment.stats.total.num_requests
        with open(CPU_FILE, "w") as f:
            json.dump({"cpu": time.process_time() - _cpu_start[0], "requests": requests}, f)


class Client(FastHttpUser):
    wait_time = constant(0)

    @task
    def get(self) -> None:
        self.client.get(random.choice(PATHS))
