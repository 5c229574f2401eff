"""Log-normal latencies from examples/target.py's /sleep, with a test listener that keeps every raw response time.

The times (ms, as Locust measured them) are written at the test's stop, one per line, to a file per process (the
SPREAD_TIMES path with the process id appended: a master and workers would each write theirs). Each is also
observed by a custom native histogram of schema 0, in seconds.
"""

import math
import os
import random

from locust import HttpUser, constant, events, task
from locust_prometheus_exporter import Histogram, PrometheusExporter

exporter = PrometheusExporter("127.0.0.1", 0)
coarse = Histogram("spread_coarse_seconds", "Response times at native schema 0", native=True, native_schema=0)

MEDIAN_MS = 60.0
SIGMA = 0.6
times: list[float] = []


@events.request.add_listener
def keep(response_time, **_kwargs):
    times.append(response_time)
    coarse.observe(response_time / 1000)


@events.test_stop.add_listener
def write(**_kwargs):
    with open(f"{os.environ['SPREAD_TIMES']}.{os.getpid()}", "w") as f:
        f.write("".join(f"{t!r}\n" for t in times))


class Spread(HttpUser):
    wait_time = constant(0)

    @task
    def sleep(self):
        ms = random.lognormvariate(math.log(MEDIAN_MS), SIGMA)
        self.client.get(f"/sleep?ms={ms:.3f}", name="/sleep")
