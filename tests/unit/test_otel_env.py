"""The OpenTelemetry SDK's standard variables as the OTLP push reads them (no process started)."""

from __future__ import annotations

import pytest
from locust_prometheus_exporter import _otel_env

VARIABLES = (
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SERVICE_NAME",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_name_the_service_locust_and_the_instance():
    assert _otel_env.push_settings("host:9646") == {
        "resource": [("service.name", "locust"), ("service.instance.id", "host:9646")]
    }


def test_metrics_specific_variables_win_and_values_are_percent_decoded(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "X-All=1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", " Authorization = Bearer%20t%2Co ,X-Scope-OrgID=a")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", "/all.pem")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "/metrics.pem")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes,service.instance.id=i,k=v%3Dw")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    assert _otel_env.push_settings("host:1") == {
        "headers": [("Authorization", "Bearer t,o"), ("X-Scope-OrgID", "a")],
        "ca_file": "/metrics.pem",
        "resource": [("service.name", "checkout"), ("service.instance.id", "i"), ("k", "v=w")],
    }


@pytest.mark.parametrize("value", ["Authorization Bearer s3cret", "=s3cret"])
def test_a_malformed_variable_is_named_and_not_shown(monkeypatch, value):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", value)
    with pytest.raises(ValueError, match=r"^OTEL_EXPORTER_OTLP_HEADERS: expected") as raised:
        _otel_env.push_settings("host:1")
    assert "s3cret" not in str(raised.value)
