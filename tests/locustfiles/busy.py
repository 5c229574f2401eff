"""Steady traffic with custom metrics of every kind, for the distributed-mode tests."""

from locust import HttpUser, constant, task

from locust_prometheus_exporter import Counter, Gauge, Histogram, PrometheusExporter

# One locust_users_running / _waiting series per worker.
exporter = PrometheusExporter("127.0.0.1", 0, per_worker_metrics=True)

tasks_done = Counter("busy_tasks", "Tasks run", ["task"])
users_seen = Gauge("busy_users", "Users of this process (summed over workers)")
users_max = Gauge("busy_users_max", "Users of the busiest worker", multiprocess_mode="livemax")
per_worker = Gauge("busy_users_per_worker", "Users by worker", multiprocess_mode="liveall")
sizes = Histogram("busy_response_bytes", "Response sizes", buckets=[10, 100])


class Busy(HttpUser):
    wait_time = constant(0.02)

    def _record(self, task: str, response) -> None:
        tasks_done.labels(task).inc()
        count = self.environment.runner.user_count
        for gauge in (users_seen, users_max, per_worker):
            gauge.set(count)
        sizes.observe(len(response.content))

    @task(3)
    def index(self):
        self._record("index", self.client.get("/"))

    @task
    def about(self):
        self._record("about", self.client.get("/about/"))
