"""The reference: the same Locust metrics exported the usual way, with prometheus_client.

A Python listener on ``events.request`` doing ``labels(...).inc()`` / ``observe()``, and prometheus_client's
``start_http_server`` started from Locust's ``init``. Names, labels, buckets and label values match the
project's, so both expose the same series.
"""

from __future__ import annotations

from typing import Any

import locust
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)

# The project serves no `_created` series: leave them out here too, so both expositions hold the same lines.
disable_created_metrics()
# The project's default buckets: same number of series lines in both expositions.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0)


class ReferenceExporter:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        # Own registry: without the default process/GC collectors, which the project does not serve either.
        self.registry = CollectorRegistry(auto_describe=False)
        by_request = ["method", "name"]
        self.requests = Counter(
            "locust_requests", "Requests made", ["method", "name", "status", "exception"], registry=self.registry
        )
        self.duration = Histogram(
            "locust_request_duration_seconds", "Request duration", by_request, buckets=BUCKETS, registry=self.registry
        )
        self.request_bytes = Counter(
            "locust_request_length_bytes", "Request body bytes", by_request, registry=self.registry
        )
        self.response_bytes = Counter(
            "locust_response_length_bytes", "Response bytes", by_request, registry=self.registry
        )
        self.server: Any = None
        locust.events.request.add_listener(self.on_request)
        locust.events.init.add_listener(lambda **_kw: self.serve())

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float | None,
        response_length: int,
        response: Any = None,
        exception: BaseException | None = None,
        **_kw: Any,
    ) -> None:
        code = getattr(response, "status_code", None)
        status = "" if code is None else str(code)
        error = "" if exception is None else type(exception).__name__
        self.requests.labels(request_type, name, status, error).inc()
        request = getattr(response, "request", None)
        body = getattr(request, "body", None) or getattr(request, "payload", None)
        self.request_bytes.labels(request_type, name).inc(len(body) if isinstance(body, (str, bytes)) else 0)
        self.response_bytes.labels(request_type, name).inc(response_length or 0)
        if response_time is not None:
            self.duration.labels(request_type, name).observe(response_time / 1000)

    def serve(self) -> None:
        if self.server is None:
            self.server, _thread = start_http_server(self.port, self.host, registry=self.registry)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server.server_port}/metrics"

    def render(self) -> bytes:
        return generate_latest(self.registry)
