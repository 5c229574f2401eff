"""Probing the exporter's own HTTP server: its URL, its own counters, what a raw socket receives."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from support.scrape import http_get, samples_of

if TYPE_CHECKING:
    from locust_prometheus_exporter import PrometheusExporter


def url(e: PrometheusExporter, path: str = "/metrics") -> str:
    assert e.address is not None
    return f"http://127.0.0.1:{e.address[1]}{path}"


def server_counts(port: int) -> dict[str, float]:
    """The server's own counters, from a scrape: `code=200`, `reason=limit`, ..."""
    status, _, body = http_get(f"http://127.0.0.1:{port}/metrics?name[]=locust_exporter_http_requests_total"
                               "&name[]=locust_exporter_connections_dropped_total")  # fmt: skip
    assert status == 200
    return {"=".join(labels[0]): value for (_, labels), value in samples_of(body.decode()).items()}


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def read_to_close(s: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed); fails on timeout."""
    s.settimeout(timeout)
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def os_threads() -> int:
    """The threads of this process, as the kernel counts them."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        return s.connect_ex((host, port)) == 0
