"""Probing the exporter's own HTTP server: its URL, its own counters, what a raw socket receives."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
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


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (IPv4 and IPv6), from /proc: its socket descriptors' inodes
    in the kernel's socket tables. For a server told to bind port 0, the port it bound."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # TCP_LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.01) -> None:
    """Polls `predicate` until it is true; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(interval)
