"""The load test the manifests run: mounted from the ConfigMap `locustfile` (kustomization.yaml) at /mnt/locust."""

from locust import HttpUser, between, task
from locust_prometheus_exporter import PrometheusExporter

# Only the master serves; LOCUST_PROMETHEUS_HOST and _PORT in the manifests override these.
exporter = PrometheusExporter("0.0.0.0", 9091)


class WebsiteUser(HttpUser):
    wait_time = between(0.1, 0.5)

    @task(3)
    def index(self):
        self.client.get("/")

    @task
    def about(self):
        self.client.get("/about/")
