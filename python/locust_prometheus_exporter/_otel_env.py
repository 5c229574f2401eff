"""The OpenTelemetry SDK's standard environment variables that the OTLP push reads (and never sets: Locust's own
``--otel`` may run beside it): headers, a CA file, and the resource's attributes."""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

#: The resource's service name when neither ``OTEL_SERVICE_NAME`` nor ``OTEL_RESOURCE_ATTRIBUTES`` gives one: after
#: Prometheus's translation it is the ``job`` label, as remote write and a scrape job named ``locust`` give it.
SERVICE_NAME = "locust"


def _first(*names: str) -> tuple[str, str] | None:
    """(name, value) of the first variable set and not empty (the signal-specific one comes first)."""
    return next(((n, os.environ[n]) for n in names if os.environ.get(n)), None)


def _decoded_pairs(name: str, text: str) -> list[tuple[str, str]]:
    """``k1=v1,k2=v2`` with percent-encoded values (the W3C Baggage form the variables use); ``ValueError`` naming
    the variable for a part without ``=``, without showing it (a header may hold a secret)."""
    found = []
    for part in filter(str.strip, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{name}: expected comma-separated name=value pairs")
        found.append((key.strip(), urllib.parse.unquote(value.strip())))
    return found


def push_settings(instance: str) -> dict[str, Any]:
    """``headers``, ``ca_file`` and ``resource`` for the OTLP pusher; ``ValueError`` for a malformed variable.

    The resource is ``service.name=locust`` and ``service.instance.id=<instance>`` (``job`` and ``instance`` after
    Prometheus's translation), overridden by ``OTEL_RESOURCE_ATTRIBUTES``, then ``OTEL_SERVICE_NAME``."""
    settings: dict[str, Any] = {}
    headers = _first("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
    if headers:
        settings["headers"] = _decoded_pairs(*headers)
    ca = _first("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE")
    if ca:
        settings["ca_file"] = ca[1]
    resource = {"service.name": SERVICE_NAME, "service.instance.id": instance}
    resource.update(_decoded_pairs("OTEL_RESOURCE_ATTRIBUTES", os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")))
    if os.environ.get("OTEL_SERVICE_NAME"):
        resource["service.name"] = os.environ["OTEL_SERVICE_NAME"]
    settings["resource"] = list(resource.items())
    return settings
