from locust import HttpUser, between, task
from locust_prometheus_exporter import Counter, Gauge, PrometheusExporter

exporter = PrometheusExporter("0.0.0.0", 9091)

# Define custom metrics
custom_gauge = Gauge("my_custom_gauge", "A simple gauge metric")
custom_counter = Counter("my_custom_counter", "A simple counter metric")


class WebsiteUser(HttpUser):
    wait_time = between(1, 5)
    host = "http://localhost:8000"

    @task
    def index(self):
        self.client.get("/")
        # Update custom metrics
        custom_gauge.set(self.environment.runner.user_count)  # Set gauge to current user count
        custom_counter.inc()  # Increment the counter

    def on_start(self):
        exporter.start(self)

    def on_stop(self):
        exporter.stop()
