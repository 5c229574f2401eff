"""Scraping /metrics as Prometheus does, and reading an exposition: checked by prometheus_client and promtool."""

from __future__ import annotations

import gzip
import random
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from support.process import require

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT = "text/plain; version=0.0.4; charset=utf-8"


#: Where `free_port` looks: below the kernel's ephemeral range (read at import), which port-0 binds and outgoing
#: connections draw from.
_EPHEMERAL_LOW = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
_given: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a program that must be given its port before it starts (children that
    connect to `--master-port`, a Prometheus configured before the run): below the ephemeral range, so that no
    port-0 bind and no outgoing connection, of this process or of a test running beside it, can take it before
    the program binds it; drawn at random, so that two test processes are unlikely to draw the same one."""
    for port in random.sample(range(10_000, _EPHEMERAL_LOW), 1_000):
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken
        _given.add(port)
        return port
    raise AssertionError(f"no free port found between 10000 and {_EPHEMERAL_LOW}")


def http_get(
    url: str, headers: dict[str, str] | None = None, method: str = "GET", timeout: float = 10, data: bytes | None = None
):
    """(status, headers, body bytes) of one request; HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


#: promtool's findings about the names locustfiles give their own metrics (the user's to choose), by locustfile:
#: expected, and nothing else, of a scrape of a run of it.
LINT = {
    "locustfile_custom_metrics.py": (
        "my_custom_counter_total metric name should not include type 'counter'",
        "my_custom_gauge metric name should not include type 'gauge'",
    ),
    "busy.py": ('busy_index_sum non-histogram and non-summary metrics should not have "_sum" suffix',),
}


def promtool_check(text: str, expected: tuple[str, ...] = ()) -> None:
    """`promtool check metrics` (Prometheus's own parser and linter) accepts a text 0.0.4 exposition, with no
    finding but the `expected` ones (whole lines of its output, such as a user-chosen name's lint finding, which
    the test then asserts are there), each of them present."""
    require("promtool", "prometheus")
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    findings = sorted(line for line in (r.stdout + r.stderr).splitlines() if line.strip())
    # Exit 3: lint findings only; anything else but 0 is an error.
    assert (r.returncode, findings) == ((3 if expected else 0), sorted(expected)), (r.returncode, findings)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples_of(text: str, openmetrics: bool = False) -> Samples:
    """Every sample of an exposition, parsed strictly by prometheus_client, keyed by (name, sorted labels)."""
    parse = parse_openmetrics if openmetrics else parse_text
    out: Samples = {}
    for family in parse(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate sample {key}"
            out[key] = s.value
    return out


def total(samples: Samples, metric: str, /, **labels: str) -> float:
    """Sum of the samples named `metric` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == metric and labels.items() <= dict(ls).items())


def scrape_text(port: int, openmetrics: bool = False) -> str:
    """Scrapes /metrics like Prometheus would, checks the headers, and returns the exposition."""
    accept = "application/openmetrics-text;version=1.0.0" if openmetrics else "text/plain;version=0.0.4"
    status, headers, body = http_get(f"http://127.0.0.1:{port}/metrics", {"Accept": accept, "Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Type"] == (OPENMETRICS if openmetrics else TEXT)
    text = gzip.decompress(body).decode() if headers.get("Content-Encoding") == "gzip" else body.decode()
    if openmetrics:
        assert text.endswith("# EOF\n")
    return text


def scrape(port: int, openmetrics: bool = False, lint: bool = False) -> Samples:
    """Scrapes /metrics like Prometheus would and returns the parsed samples (checked by promtool with `lint`)."""
    text = scrape_text(port, openmetrics)
    if lint:
        promtool_check(text)
    return samples_of(text, openmetrics)


def requests_by_name(samples: Samples) -> dict[tuple[str, str], tuple[float, float]]:
    """(method, name) -> (requests, failures) from locust_requests_total."""
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for (name, labels), v in samples.items():
        if name != "locust_requests_total":
            continue
        ls = dict(labels)
        req, fail = out.get((ls["method"], ls["name"]), (0.0, 0.0))
        out[(ls["method"], ls["name"])] = (req + v, fail + (v if ls["exception"] else 0.0))
    return out


def delimited_messages(body: bytes) -> list[bytes]:
    """Splits a body of varint-length-prefixed messages; fails unless the prefixes tile it exactly."""
    messages, i = [], 0
    while i < len(body):
        length = shift = 0
        while True:
            byte = body[i]
            i += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        messages.append(body[i : i + length])
        i += length
    assert i == len(body)
    return messages
