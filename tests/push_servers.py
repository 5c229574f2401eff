"""Real receivers for the end-of-run tests: Debian's `prometheus` (scraping at a chosen interval, and
receiving remote write) and `prometheus-pushgateway`, each on 127.0.0.1 at a free port."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, samples_of
from prometheus_server import PrometheusServer


class ScrapingPrometheus(PrometheusServer):
    """Prometheus scraping 127.0.0.1:scrape_port as job "locust" every `interval` s (none with `scrape_port=None`),
    with the remote-write receiver on."""

    def __init__(self, workdir: Path, scrape_port: int | None, interval: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.target = f"127.0.0.1:{scrape_port}"
        workdir.mkdir(parents=True, exist_ok=True)
        jobs = [{"job_name": "locust", "static_configs": [{"targets": [self.target]}]}] if scrape_port else []
        config = {"global": {"scrape_interval": f"{interval:g}s"}, "scrape_configs": jobs}
        (workdir / "prometheus.yml").write_text(json.dumps(config))
        self.log = workdir / "prometheus.log"
        self._log_file = open(self.log, "w")
        cmd = [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
        ]
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT)

    def scraped_once(self) -> bool:
        """Whether it tried a first scrape (it may have failed: the target may not listen yet)."""
        return any(not t["lastScrape"].startswith("0001-") for t in self.targets())

    def last_values(self, metric: str, by: str = "method, name") -> dict[tuple[str, ...], float]:
        """The last stored value of `sum by (...)` of a counter, whether or not the series went stale since."""
        keys = [k.strip() for k in by.split(",")]
        result = self.query(f"sum by ({by}) (last_over_time({metric}[10m]))")
        return {tuple(r["metric"].get(k, "") for k in keys): float(r["value"][1]) for r in result}


class Pushgateway:
    """`prometheus-pushgateway` on 127.0.0.1 (its default, :9091, is the exporter's default port)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "pushgateway.log"
        self._log_file = open(self.log, "w")
        binary = shutil.which("prometheus-pushgateway") or "prometheus-pushgateway"
        cmd = [binary, f"--web.listen-address=127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT)

    def metrics(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as r:
            return samples_of(r.read().decode())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self._log_file.close()


@pytest.fixture
def scraping_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """``start(scrape_port, interval) -> ScrapingPrometheus``, ready."""
    if shutil.which("prometheus") is None:
        pytest.skip("the prometheus binary is not installed (Debian: apt-get install prometheus)")
    servers: list[ScrapingPrometheus] = []

    def start(scrape_port: int | None, interval: float = 5) -> ScrapingPrometheus:
        server = ScrapingPrometheus(tmp_path_factory.mktemp("prometheus"), scrape_port, interval)
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushgateway]:
    if shutil.which("prometheus-pushgateway") is None:
        pytest.skip("prometheus-pushgateway is not installed (Debian: apt-get install prometheus-pushgateway)")
    gateway = Pushgateway(tmp_path_factory.mktemp("pushgateway"))

    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{gateway.url}/-/ready", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline or gateway.proc.poll() is not None:
                raise AssertionError(f"pushgateway did not start\n{gateway.log.read_text()}") from None
            time.sleep(0.1)
    yield gateway
    gateway.stop()
