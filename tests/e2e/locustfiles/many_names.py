"""A URL with an id in it and no name=: every request a new name (process id first, so workers differ)."""

import itertools
import os

from locust import User, constant, task
from locust_prometheus_exporter import PrometheusExporter

exporter = PrometheusExporter("127.0.0.1", 9091)
ids = itertools.count()


class ItemUser(User):
    wait_time = constant(0.005)

    @task
    def item(self):
        self.environment.events.request.fire(
            request_type="GET",
            name=f"/items/{os.getpid()}/{next(ids)}",
            response_time=2.0,
            response_length=10,
            exception=None,
            context={},
        )
