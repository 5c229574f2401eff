"""The OTLP push (`--prometheus-otlp`) to a real OTLP/HTTP receiver on a real socket, which decodes what it gets with
the `opentelemetry-proto` package: exact merged totals, exponential histograms equal to the native buckets /metrics
serves, names that Prometheus's translation turns into the served ones, the `auto` fallback to explicit bounds, and
the OpenTelemetry SDK's standard variables."""

from __future__ import annotations

import json
import re
import socket
import uuid
from pathlib import Path

import pytest
from support.otlp import (
    OtlpReceiver,
    attributes,
    data_points,
    exponential_buckets,
    exponential_quantile,
    metrics_of,
    prometheus_name,
    resource_of,
    scraped_families,
)
from support.paths import LOCUSTFILES
from support.receivers import make_ca_and_server_cert

SPREAD = LOCUSTFILES / "spread.py"
BUSY = LOCUSTFILES / "busy.py"
QUANTILES = (0.5, 0.95, 0.99)
DURATION = "locust_request_duration_seconds"


@pytest.fixture
def receiver():
    """``start(refuse_exponential=None, tls=None) -> OtlpReceiver``; closed at the end."""
    started: list[OtlpReceiver] = []

    def start(refuse_exponential: str | None = None, tls: tuple[Path, Path] | None = None) -> OtlpReceiver:
        started.append(OtlpReceiver(refuse_exponential, tls))
        return started[-1]

    yield start
    for r in started:
        r.close()


def exact_quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default), as test_native_histogram.py computes it."""
    pos = q * (len(sorted_values) - 1)
    i = int(pos)
    upper = sorted_values[min(i + 1, len(sorted_values) - 1)]
    return sorted_values[i] + (upper - sorted_values[i]) * (pos - i)


def json_total(path: Path) -> float:
    """Locust's final request count, from its `--json-file`."""
    total = sum(float(e["num_requests"]) for e in json.loads(path.read_text()))
    assert total, "Locust recorded no requests"
    return total


def otlp_summary(out: str) -> tuple[int, int, int]:
    """(sent, failed, samples dropped) of the line logged at quit for the OTLP pushes."""
    found = re.findall(r"Pushes by OTLP to \S+: (\d+) sent, (\d+) failed, (\d+) samples dropped", out)
    assert len(found) == 1, out
    return tuple(map(int, found[0]))  # type: ignore[return-value]


def metric(request, name: str):
    [found] = [m for m in metrics_of(request) if m.name == name]
    return found


def total_of(request, name: str) -> float:
    return sum(p.as_double for p in data_points(metric(request, name)))


@pytest.mark.parametrize("workers", [0, 2], ids=["local", "2-workers"])
def test_otlp_pushes_the_exact_merged_values(run_locust, receiver, tmp_path, workers):
    """After exit, the last push holds Locust's `--json-file` total; its exponential histograms equal the native
    buckets of a protobuf scrape of /metrics after the test stopped, bucket for bucket; its percentiles are within
    5 % of the exact ones; and every name, translated as Prometheus does, is one that /metrics serves."""
    otlp = receiver()
    final = tmp_path / f"final-{uuid.uuid4().hex[:8]}.json"
    run = run_locust(
        SPREAD, users=30, rate=30, run_time=24, autoquit=6, workers=workers,
        extra=("--prometheus-otlp", otlp.url, "--json-file", final.stem), env={"SPREAD_TIMES": str(tmp_path / "times")},
    )  # fmt: skip
    run.wait_stopped()
    scraped = scraped_families(run.metrics_port)
    assert run.finish(timeout=90) == [0] * (workers + 1), run.output()
    out = run.output()
    total = json_total(final)
    texts = [f.read_text() for f in tmp_path.glob("times.*")]
    assert len(texts) == 1 + workers, texts
    seconds = sorted(float(line) / 1000 for text in texts for line in text.split())
    assert len(seconds) == total >= 1000, (len(seconds), total)

    sent, failed, dropped = otlp_summary(out)
    assert sent >= 4 and (failed, dropped) == (0, 0), out  # one every 5 s, and the final one
    assert len(otlp.exports) == sent and all(e.accepted for e in otlp.exports)
    # Only the master (or the only process) pushes: one instance, the serving one.
    instance = f"{socket.gethostname()}:{run.metrics_port}"
    assert {tuple(sorted(resource_of(e.request).items())) for e in otlp.exports} == {
        (("service.instance.id", instance), ("service.name", "locust"))
    }
    last = otlp.exports[-1].request

    assert total_of(last, "locust_requests") == total
    duration = metric(last, "locust_request_duration")
    assert (duration.unit, duration.WhichOneof("data")) == ("s", "exponential_histogram")
    assert duration.exponential_histogram.aggregation_temporality == 2  # cumulative
    assert sum(p.count for p in data_points(duration)) == total
    # Bucket for bucket: OTLP index i is the native key i + 1, (2^(i·2^-s), 2^((i+1)·2^-s)].
    for family in (DURATION, "spread_coarse_seconds"):
        name = family.removesuffix("_seconds")
        pushed = {
            tuple(sorted(attributes(p).items())): (p.scale, p.count, p.zero_count, exponential_buckets(p))
            for p in data_points(metric(last, name))
        }
        native = {
            labels: (schema, count, zero, [(key - 1, n) for key, n in keys])
            for labels, (schema, count, zero, keys) in scraped.native[family].items()
        }
        assert pushed == native and pushed, (family, pushed, native)
    assert {scale for scale, *_ in pushed.values()} == {0}  # spread_coarse_seconds: schema 0
    assert {p.scale for p in data_points(duration)} == {3}  # the request durations: schema 3

    [sleep] = [p for p in data_points(duration) if attributes(p)["name"] == "/sleep"]
    rows = []
    for q in QUANTILES:
        exact, got = exact_quantile(seconds, q), exponential_quantile(sleep, q)
        rows.append((q, exact, got))
        assert abs(got / exact - 1) <= 0.05, (q, got, exact)
    print(f"\n{len(seconds)} requests\nquantile  exact ms  exponential ms (error)")
    for q, exact, got in rows:
        print(f"p{q * 100:<7g} {exact * 1e3:9.2f} {got * 1e3:9.2f} ({got / exact - 1:+6.1%})")

    # Names: every pushed metric translates to a family /metrics serves, with the same label names.
    for m in metrics_of(last):
        translated = prometheus_name(m)
        assert translated in scraped.label_names, (m.name, m.unit, translated, sorted(scraped.label_names))
        for p in data_points(m):
            assert set(attributes(p)) in scraped.label_names[translated], (translated, attributes(p))
    assert {prometheus_name(m) for m in metrics_of(last)} >= {
        "locust_requests_total", DURATION, "locust_response_length_bytes_total", "locust_users_running",
        "locust_test_info", "spread_coarse_seconds",
    }  # fmt: skip


def headless(run_locust, tmp_path, seconds: int, extra=(), env=None):
    """A `--headless -t` run of busy.py (4 users); returns the run and the path of its `--json-file`."""
    final = f"final-{uuid.uuid4().hex[:8]}"
    args = ("--headless", "-t", f"{seconds}s", "-u", "4", "-r", "4", "--json-file", final, *extra)
    return run_locust(BUSY, autostart=False, extra=args, env=env), tmp_path / f"{final}.json"


@pytest.mark.parametrize("refusal", ["partial", "400"])
def test_auto_falls_back_to_explicit_histograms_and_loses_nothing(run_locust, receiver, tmp_path, refusal):
    """A receiver that refuses exponential histograms (a `partial_success`, or a 400 naming them) gets the same
    batch again with explicit bounds, and explicit bounds from then on: its last push holds every request."""
    otlp = receiver(refuse_exponential=refusal)
    extra = ("--prometheus-otlp", otlp.url, "--prometheus-push-interval", "2")
    run, final = headless(run_locust, tmp_path, 7, extra)
    assert run.finish(timeout=60) == [0], run.output()
    out = run.output()
    assert otlp_summary(out) == (len(otlp.exports) - 1, 1, 0), out  # one refused attempt, resent at once
    refused, *taken = otlp.exports
    kinds = [{m.name: m.WhichOneof("data") for m in metrics_of(e.request)} for e in otlp.exports]
    assert not refused.accepted and kinds[0]["locust_request_duration"] == "exponential_histogram"
    assert len(taken) >= 3 and all(e.accepted for e in taken), out
    assert all(k["locust_request_duration"] == "histogram" for k in kinds[1:]), kinds
    assert all("exponential_histogram" not in k.values() for k in kinds[1:])
    assert len(re.findall(r"OTLP to \S+ refused the exponential histograms.*explicit", out)) == 1, out

    last = taken[-1].request
    total = json_total(final)
    assert total_of(last, "locust_requests") == total
    points = data_points(metric(last, "locust_request_duration"))
    assert sum(p.count for p in points) == total
    assert all(sum(p.bucket_counts) == p.count and len(p.bucket_counts) == len(p.explicit_bounds) + 1 for p in points)

    # Asked for exponential histograms only: no fallback, and the refusals are not retried.
    otlp = receiver(refuse_exponential="400")
    extra = ("--prometheus-otlp", otlp.url, "--prometheus-otlp-histograms", "exponential", "--prometheus-linger", "2")
    run, _ = headless(run_locust, tmp_path, 3, extra)
    assert run.finish(timeout=60) == [0], run.output()
    sent, failed, dropped = otlp_summary(run.output())
    assert sent == 0 and failed == len(otlp.exports) >= 1 and dropped > 0, run.output()


def test_standard_variables_give_headers_resource_and_ca(run_locust, receiver, tmp_path):
    """Over TLS with the CA of OTEL_EXPORTER_OTLP_CERTIFICATE: the headers of OTEL_EXPORTER_OTLP_HEADERS (percent-
    decoded; the metrics-specific variable wins), the resource of OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, and
    --prometheus-labels on every point; the token never reaches the log."""
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    otlp = receiver(tls=(cert, key))
    env = {
        "OTEL_EXPORTER_OTLP_HEADERS": "X-Ignored=1",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "X-Scope-OrgID=tenant-1,Authorization=Bearer%20s3cret-token",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(ca),
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci,service.name=overridden,team=perf%20lab",
        "OTEL_SERVICE_NAME": "checkout-load",
    }
    extra = ("--prometheus-otlp", otlp.url, "--prometheus-labels", "env=staging")
    run, final = headless(run_locust, tmp_path, 4, extra, env)
    assert run.finish(timeout=60) == [0], run.output()
    out = run.output()
    assert otlp_summary(out)[1:] == (0, 0), out
    assert otlp.exports
    for export in otlp.exports:
        h = export.headers
        assert (export.path, h["content-type"], h["content-encoding"]) == (
            "/v1/metrics",
            "application/x-protobuf",
            "gzip",
        )
        assert (h["x-scope-orgid"], h["authorization"], "x-ignored" in h) == ("tenant-1", "Bearer s3cret-token", False)
        assert resource_of(export.request) == {
            "service.name": "checkout-load",
            "service.instance.id": f"{socket.gethostname()}:{run.metrics_port}",
            "deployment.environment": "ci",
            "team": "perf lab",
        }
        assert all(attributes(p)["env"] == "staging" for m in metrics_of(export.request) for p in data_points(m))
    assert total_of(otlp.exports[-1].request, "locust_requests") == json_total(final)
    assert "s3cret-token" not in out


def test_malformed_variable_stops_locust_at_init_without_showing_it(run_locust, tmp_path):
    env = {"OTEL_EXPORTER_OTLP_HEADERS": "Authorization Bearer s3cret-token"}
    run, _ = headless(run_locust, tmp_path, 3, ("--prometheus-otlp", "http://127.0.0.1:9"), env)
    assert run.finish(timeout=60) == [1], run.output()
    out = run.output()
    assert "--prometheus-otlp: OTEL_EXPORTER_OTLP_HEADERS: expected comma-separated name=value pairs" in out, out
    assert "s3cret-token" not in out and "Traceback" not in out


#: The OpenTelemetry SDK's default explicit bounds, which Locust's `--otel` histogram keeps (in seconds).
SDK_BOUNDS = [0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0]


def test_beside_locusts_own_otel(run_locust, receiver, tmp_path):
    """Locust's `--otel` (the OpenTelemetry SDK, over OTLP/HTTP to its own endpoint) and `--prometheus-otlp` in one
    process, reading the same variables: each receiver gets its own metrics only, ours the exact total, and
    Locust's the duration histogram with the SDK's default bounds that the README compares."""
    ours, theirs = receiver(), receiver()
    env = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": theirs.url,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    }
    run, final = headless(run_locust, tmp_path, 5, ("--otel", "--prometheus-otlp", ours.url), env)
    assert run.finish(timeout=60) == [0], run.output()
    assert otlp_summary(run.output())[1:] == (0, 0), run.output()
    assert ours.exports and theirs.exports, run.output()
    our_names = {m.name for e in ours.exports for m in metrics_of(e.request)}
    their_names = {m.name for e in theirs.exports for m in metrics_of(e.request)}
    assert "locust.client.duration" in their_names and not their_names & our_names, (their_names, our_names)
    assert total_of(ours.exports[-1].request, "locust_requests") == json_total(final)
    duration = [m for e in theirs.exports for m in metrics_of(e.request) if m.name == "locust.client.duration"][-1]
    assert (duration.unit, duration.WhichOneof("data")) == ("s", "histogram")
    assert {tuple(p.explicit_bounds) for p in data_points(duration)} == {tuple(SDK_BOUNDS)}
    assert {tuple(attributes(p)) for p in data_points(duration)} <= {("name",), ("name", "error.type")}
