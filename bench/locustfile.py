"""The end-to-end load: FastHttpUser, no wait, 10 request names, against run.py's nginx.

BENCH_EXPORTER picks the variant (none, project, reference); BENCH_METRICS_PORT is where it serves /metrics.
Both exporters are constructed at import, as their users do, and start serving on Locust's init.
"""

import os
import random

from locust import FastHttpUser, constant, task

VARIANT = os.environ["BENCH_EXPORTER"]
PORT = int(os.environ.get("BENCH_METRICS_PORT", "0"))

if VARIANT == "project":
    from locust_prometheus_exporter import PrometheusExporter

    exporter = PrometheusExporter("127.0.0.1", PORT)
elif VARIANT == "reference":
    from reference import ReferenceExporter

    exporter = ReferenceExporter("127.0.0.1", PORT)

PATHS = [f"/api/items/{i}" for i in range(10)]


class Client(FastHttpUser):
    wait_time = constant(0)

    @task
    def get(self) -> None:
        self.client.get(random.choice(PATHS))
