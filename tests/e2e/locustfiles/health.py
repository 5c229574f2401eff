"""Requests fired without a network, and Locust measuring its own CPU and memory every second."""

import locust.runners
from locust import User, constant, task
from locust_prometheus_exporter import PrometheusExporter

# Locust's default is every 10 s, the first after 10 s: shorter, so that a short run sees measures.
locust.runners.CPU_MONITOR_INTERVAL = 1.0

exporter = PrometheusExporter("127.0.0.1", 9091)


class Busy(User):
    wait_time = constant(0.01)

    @task
    def work(self):
        self.environment.events.request.fire(
            request_type="GET", name="/", response_time=1.0, response_length=1, exception=None, context={}
        )
