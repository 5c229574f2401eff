"""Two exporters, each on a registry of its own, with a custom counter of the same name in each, for the
test that workers' reports reach the right registry on the master."""

from locust import HttpUser, constant, task
from locust_prometheus_exporter import REGISTRY, CollectorRegistry, Counter, PrometheusExporter

own = CollectorRegistry()
# The first exporter made: the one `--prometheus-host` / `--prometheus-port` move.
exporter = PrometheusExporter("127.0.0.1", 0, registry=own)
default_exporter = PrometheusExporter("127.0.0.1", 0, registry=REGISTRY)

# Once a request in one registry, twice in the other: a report applied to the wrong one shows.
own_tasks = Counter("tasks", "Tasks run", ["task"], registry=own)
default_tasks = Counter("tasks", "Twice the tasks run", ["task"])


class Two(HttpUser):
    wait_time = constant(0.05)

    def _count(self, task: str) -> None:
        own_tasks.labels(task).inc()
        default_tasks.labels(task).inc(2)

    @task(3)
    def index(self):
        self.client.get("/")
        self._count("index")

    @task
    def about(self):
        self.client.get("/about/")
        self._count("about")
