"""A load generator out of descriptors: 300 users without a pause at the limit `FD_LIMIT` (as `ulimit -n` sets it
before Locust starts). Each request holds its connection half a second, so about as many connections as the limit
allows stay open and every other user fails to connect ("Too many open files") over and over."""

import os
import resource

from locust import FastHttpUser, constant, task
from locust_prometheus_exporter import PrometheusExporter

limit = int(os.environ["FD_LIMIT"])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

exporter = PrometheusExporter("127.0.0.1", 9091)


class Starved(FastHttpUser):
    wait_time = constant(0)

    @task
    def slow(self):
        self.client.get("/sleep?ms=500")
