"""Exact Prometheus metrics for Locust load tests, served from a native thread.

Three lines in a locustfile::

    from locust_prometheus_exporter import PrometheusExporter
    exporter = PrometheusExporter("0.0.0.0", 9091)
    # ... and optionally exporter.start(self) / exporter.stop() in on_start / on_stop

Importing this package has no side effects; constructing a :class:`PrometheusExporter` subscribes to
Locust's events. Custom :class:`Counter`, :class:`Gauge` and :class:`Histogram` metrics behave as in
prometheus_client: they are registered in :data:`REGISTRY` unless given another :class:`CollectorRegistry`
with ``registry=``, and an exporter serves the registry it was given (``REGISTRY`` by default).
"""

from ._exporter import PrometheusExporter
from ._native import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, __version__

__all__ = ["REGISTRY", "CollectorRegistry", "Counter", "Gauge", "Histogram", "PrometheusExporter", "__version__"]
