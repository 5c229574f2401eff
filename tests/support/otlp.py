"""An OTLP/HTTP metrics receiver on 127.0.0.1 that decodes with the `opentelemetry-proto` package, and what the
OTLP tests read: Prometheus's default OTLP name translation, exponential buckets and their quantiles, and the native
buckets of a protobuf scrape of /metrics (decoded with `protobuf`, from a descriptor of Prometheus's metrics.proto)."""

from __future__ import annotations

import gzip
import http.server
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from support.receivers import serve
from support.scrape import delimited_messages, http_get

PROTOBUF_ACCEPT = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"


@dataclass
class Export:
    """One request the receiver took: its path, headers (lowercase names) and decoded body, and whether it was
    accepted (2xx, without rejected points)."""

    path: str
    headers: dict[str, str]
    request: Any
    accepted: bool


class OtlpReceiver(http.server.ThreadingHTTPServer):
    """Takes `POST /v1/metrics` (protobuf, gzip or not), over TLS with `tls` (certificate, key). With
    `refuse_exponential` set, a request holding an exponential histogram is refused as receivers without them do:
    `"partial"` answers 200 with a `partial_success` rejecting its exponential points (the rest taken), `"400"`
    answers 400 naming them."""

    def __init__(self, refuse_exponential: str | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.refuse_exponential = refuse_exponential
        self.exports: list[Export] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = serve(self, tls)

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportMetricsServiceRequest.FromString(body)
        exponential = sum(
            len(m.exponential_histogram.data_points)
            for rm in request.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.WhichOneof("data") == "exponential_histogram"
        )
        refuse = self.server.refuse_exponential if exponential else None
        with self.server.lock:
            headers = {k.lower(): v for k, v in self.headers.items()}
            self.server.exports.append(Export(self.path, headers, request, refuse is None))
        if refuse == "400":
            self._answer(400, b"exponential histograms are not supported", "text/plain")
            return
        response = ExportMetricsServiceResponse()
        if refuse == "partial":
            response.partial_success.rejected_data_points = exponential
            response.partial_success.error_message = "exponential histogram data points are not supported"
        self._answer(200, response.SerializeToString(), "application/x-protobuf")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


def metrics_of(request: Any) -> list[Any]:
    return [m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]


def resource_of(request: Any) -> dict[str, str]:
    [rm] = request.resource_metrics
    return {kv.key: kv.value.string_value for kv in rm.resource.attributes}


def attributes(point: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in point.attributes}


def data_points(metric: Any) -> list[Any]:
    return list(getattr(metric, metric.WhichOneof("data")).data_points)


#: OTLP units to Prometheus's words (the part of otlptranslator's table the tests meet).
UNIT_WORDS = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "", "%": "percent"}


def prometheus_name(metric: Any) -> str:
    """Prometheus's default OTLP translation of a metric's name (`UnderscoreEscapingWithSuffixes`, from
    prometheus/otlptranslator): split into tokens at every character outside `[a-zA-Z0-9:]`; the unit's word
    appended unless a token is it; a monotonic sum's `total` tokens removed and one `total` appended; a gauge of
    unit `1` the same with `ratio`; joined by `_`, with `_` before a leading digit."""
    tokens = [t for t in re.split(r"[^a-zA-Z0-9:]", metric.name) if t]
    word = UNIT_WORDS.get(metric.unit, metric.unit)
    if word and word not in tokens:
        tokens.append(word)
    kind = metric.WhichOneof("data")
    if kind == "sum" and metric.sum.is_monotonic:
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if kind == "gauge" and metric.unit == "1":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    name = "_".join(tokens)
    return f"_{name}" if name[:1].isdigit() else name


def exponential_buckets(point: Any) -> list[tuple[int, int]]:
    """(index, count) of a point's populated positive buckets: index i holds (base^i, base^(i+1)]."""
    return [(point.positive.offset + i, n) for i, n in enumerate(point.positive.bucket_counts) if n]


def exponential_quantile(point: Any, q: float) -> float:
    """A quantile of an exponential histogram, by linear interpolation within the bucket that holds its rank (as
    Prometheus 2.42's histogram_quantile does for native histograms); positive values only."""
    base = 2 ** (2**-point.scale)
    rank = q * point.count
    seen = point.zero_count
    if rank <= seen:
        return 0.0
    for index, n in exponential_buckets(point):
        if seen + n >= rank:
            lower, upper = base**index, base ** (index + 1)
            return lower + (upper - lower) * (rank - seen) / n
        seen += n
    raise AssertionError(f"rank {rank} past the count of {point}")


def _prometheus_messages() -> dict[str, Any]:
    """Classes for the messages of Prometheus's io/prometheus/client/metrics.proto (proto2) that carry native
    histograms: only the fields used here, with metrics.proto's numbers. A type in capitals is a message; `[]`
    marks a repeated field."""
    fields = {
        "LabelPair": "name 1 string, value 2 string",
        "BucketSpan": "offset 1 sint32, length 2 uint32",
        "Histogram": "sample_count 1 uint64, sample_sum 2 double, schema 5 sint32, zero_threshold 6 double, "
        "zero_count 7 uint64, positive_span 12 BucketSpan[], positive_delta 13 sint64[]",
        "Metric": "label 1 LabelPair[], histogram 7 Histogram",
        "MetricFamily": "name 1 string, metric 4 Metric[]",
    }
    package = "lpe_test.prometheus"
    proto = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="lpe_test_prometheus.proto", package=package, syntax="proto2")
    for name, spec in fields.items():
        message = file.message_type.add(name=name)
        for part in spec.split(", "):
            field_name, number, kind = part.split()
            repeated = kind.endswith("[]")
            kind = kind.removesuffix("[]")
            label = proto.LABEL_REPEATED if repeated else proto.LABEL_OPTIONAL
            added = message.field.add(name=field_name, number=int(number), label=label)
            if kind[0].isupper():
                added.type, added.type_name = proto.TYPE_MESSAGE, f".{package}.{kind}"
            else:
                added.type = getattr(proto, f"TYPE_{kind.upper()}")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}")) for name in fields}


_MESSAGES = _prometheus_messages()


@dataclass
class Scraped:
    """What a protobuf scrape of /metrics serves: the label names of each family's series (by family name), and by
    histogram family and sorted labels, (schema, count, zero count, [(key, count)] of populated positive native
    buckets), native bucket `key` holding (2^((key-1)·2^-schema), 2^(key·2^-schema)]."""

    label_names: dict[str, list[set[str]]]
    native: dict[str, dict[tuple[tuple[str, str], ...], tuple[int, int, int, list[tuple[int, int]]]]]


def scraped_families(port: int) -> Scraped:
    status, headers, body = http_get(f"http://127.0.0.1:{port}/metrics", {"Accept": PROTOBUF_ACCEPT})
    assert status == 200 and headers["Content-Type"].startswith("application/vnd.google.protobuf"), headers
    scraped = Scraped({}, {})
    for raw in delimited_messages(body):
        family = _MESSAGES["MetricFamily"].FromString(raw)
        scraped.label_names[family.name] = [{lp.name for lp in m.label} for m in family.metric]
        for m in family.metric:
            h = m.histogram
            if not h.HasField("schema"):
                continue
            keys, key, count = [], 0, 0
            deltas = iter(h.positive_delta)
            for span in h.positive_span:
                key += span.offset
                for _ in range(span.length):
                    count += next(deltas)
                    if count:
                        keys.append((key, count))
                    key += 1
            labels = tuple(sorted((lp.name, lp.value) for lp in m.label))
            scraped.native.setdefault(family.name, {})[labels] = (h.schema, h.sample_count, h.zero_count, keys)
    return scraped
