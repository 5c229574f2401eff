"""Every kind of request outcome, from HttpUser and FastHttpUser alike, against examples/target.py."""

from typing import ClassVar

from locust import FastHttpUser, HttpUser, TaskSet, constant, events, task
from locust_prometheus_exporter import PrometheusExporter

exporter = PrometheusExporter("127.0.0.1", 0)

# Nothing listens on port 1 of the loopback: the connection is refused.
REFUSED = "http://127.0.0.1:1/nothing"
POST_BODY = b"x" * 123


class Outcomes(TaskSet):
    @property
    def prefix(self) -> str:
        return self.user.prefix

    @task(4)
    def ok(self):
        self.client.get("/", name=f"{self.prefix}/")

    @task
    def about(self):
        self.client.get("/about/", name=f"{self.prefix}/about/")

    @task
    def missing(self):
        self.client.get("/missing", name=f"{self.prefix}/missing")

    @task
    def error(self):
        self.client.get("/error", name=f"{self.prefix}/error")

    @task
    def post(self):
        self.client.post("/echo", data=POST_BODY, name=f"{self.prefix}/echo")

    @task
    def refused(self):
        self.client.get(REFUSED, name=f"{self.prefix}refused")

    @task
    def caught(self):
        with self.client.get("/about/", catch_response=True, name=f"{self.prefix}caught") as r:
            r.failure("rejected by the test")

    @task
    def timeout(self):
        # /slow answers after 50 ms: past a 10 ms timeout, no HTTP answer (status 0). FastHttpUser has no
        # per-request timeout.
        if self.prefix == "http":
            self.client.get("/slow", timeout=0.01, name="httptimeout")

    @task
    def manual(self):
        events.request.fire(
            request_type="CUSTOM", name="manual", response_time=1.5, response_length=7, exception=None, context={}
        )


class Http(HttpUser):
    tasks: ClassVar = [Outcomes]
    wait_time = constant(0.05)
    prefix = "http"


class Fast(FastHttpUser):
    tasks: ClassVar = [Outcomes]
    wait_time = constant(0.05)
    prefix = "fast"
