"""Enables the exporter without touching the locustfile: load this file as a second locustfile.

    locust -f locustfile.py,$(python -m locust_prometheus_exporter) --prometheus-port 9646

It defines no users. If the locustfiles before it already made an exporter, it adds none.
"""

from locust_prometheus_exporter import PrometheusExporter

if PrometheusExporter.first() is None:
    exporter = PrometheusExporter()
