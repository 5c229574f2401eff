from locust import HttpUser, between, task
from locust_prometheus_exporter import PrometheusExporter

# Initialize the exporter
exporter = PrometheusExporter("0.0.0.0", 9091)  # Host and port for the exporter


class WebsiteUser(HttpUser):
    wait_time = between(1, 5)
    host = "http://localhost:8000"  # Replace with your target host

    # This task will report metrics to the exporter
    @task
    def index(self):
        self.client.get("/")

    # You can also define custom metrics
    @task
    def about(self):
        self.client.get("/about/")

    # Register custom metrics with the exporter
    def on_start(self):
        exporter.start(self)  # Start the exporter when the user starts

    def on_stop(self):
        exporter.stop()  # Stop the exporter when the user stops
