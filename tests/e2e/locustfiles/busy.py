"""Steady traffic with custom metrics of every kind, for the distributed-mode tests."""

from locust import HttpUser, constant, task
from locust_prometheus_exporter import Counter, Gauge, Histogram, PrometheusExporter

# One locust_users_running / _waiting series per worker.
exporter = PrometheusExporter("127.0.0.1", 0, per_worker_metrics=True)

tasks_done = Counter("busy_tasks", "Tasks run", ["task"])
users_seen = Gauge("busy_users", "Users of this process (summed over workers)")
users_max = Gauge("busy_users_max", "Users of the busiest worker", multiprocess_mode="livemax")
per_worker = Gauge("busy_users_per_worker", "Users by worker", multiprocess_mode="liveall")
# The worker's index + 1 (1 and 2 with two workers), in every mode that keeps a missing worker's value.
KEPT_MODES = ("sum", "max", "min", "mostrecent", "all")
kept = {mode: Gauge(f"busy_index_{mode}", f"Worker index + 1 ({mode})", multiprocess_mode=mode) for mode in KEPT_MODES}
live_index = Gauge("busy_index_livemin", "Worker index + 1 of live workers", multiprocess_mode="livemin")
sizes = Histogram("busy_response_bytes", "Response sizes", buckets=[10, 100])


class Busy(HttpUser):
    wait_time = constant(0.02)

    def _record(self, task: str, response) -> None:
        tasks_done.labels(task).inc()
        count = self.environment.runner.user_count
        for gauge in (users_seen, users_max, per_worker):
            gauge.set(count)
        index = getattr(self.environment.runner, "worker_index", 0) + 1
        for gauge in (*kept.values(), live_index):
            gauge.set(index)
        sizes.observe(len(response.content))

    @task(3)
    def index(self):
        self._record("index", self.client.get("/"))

    @task
    def about(self):
        self._record("about", self.client.get("/about/"))
