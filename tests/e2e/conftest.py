"""Fixtures of the end-to-end tests: the local target, real locust runs, Prometheus, the Pushgateway and
other receivers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.locust_run import LocustRun, locust_cmd
from support.paths import EXAMPLES
from support.process import require, started
from support.prometheus import PrometheusServer
from support.receivers import Pushgateway, Recorder, ScrapingPrometheus
from support.scrape import LINT, free_port

sys.path.insert(0, str(EXAMPLES))  # for examples/target.py, the local target

import target as target_server


@pytest.fixture(scope="session")
def target():
    """The example target server on 127.0.0.1, for the whole session; yields its base URL."""
    server = target_server.serve(0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def run_locust(tmp_path, target):
    """Starts locust (headless-like: --autostart, then --autoquit keeps the endpoint up after the test;
    with `autostart=False` the caller drives tests through the web UI and the processes are killed at the end).

    `lint`: promtool's findings expected of the locustfile's metrics (default: `support.scrape.LINT`'s).
    `workers=N` starts a master and N `--worker` processes (each with `worker_args`; the master expects
    `expect_workers`, default N); `processes=N` uses `--processes N`.
    The exporter listens on 127.0.0.1 port 0: `metrics_port` reads the port it bound from the master's log,
    so no other process can take it between a port being chosen and bound.
    The caller waits with `wait_stopped()`, which returns the final scrape, then `finish()`es (which ends a run
    kept up by --autoquit with SIGTERM: its checks are done).
    """
    runs: list[LocustRun] = []

    def start(
        locustfile: Path,
        *,
        users: int = 4,
        rate: float = 4,
        run_time: int = 6,
        workers: int = 0,
        processes: int = 0,
        autoquit: int = 8,
        autostart: bool = True,
        worker_args: tuple[str, ...] = (),
        expect_workers: int | None = None,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        lint: tuple[str, ...] | None = None,
    ) -> LocustRun:
        if lint is None:
            lint = LINT.get(Path(locustfile).name, ())
        distributed = bool(workers or processes)
        run = LocustRun(None, tmp_path / f"run{len(runs)}", target, distributed, terminate=autostart, lint=lint)
        runs.append(run)
        common = ("--loglevel", "INFO")
        master_args = [
            "-H", target, "--web-host", "127.0.0.1", "--web-port", "0",
            "--prometheus-host", "127.0.0.1", "--prometheus-port", "0",
            "--csv", str(run.csv_prefix), "--json-file", str(run.csv_prefix), *common, *extra,
        ]  # fmt: skip
        if autostart:
            master_args += ["--autostart", "--autoquit", str(autoquit), "-t", f"{run_time}s",
                            "-u", str(users), "-r", str(rate)]  # fmt: skip
        if workers:
            expected = str(expect_workers or workers)
            master_args += ["--master", "--expect-workers", expected, "--master-bind-host", "127.0.0.1",
                            "--master-bind-port", "0"]  # fmt: skip
        if processes:
            # Its children connect to --master-port, which they cannot learn from a port 0 the parent bound: a
            # free port (see `free_port`), not Locust's default 5557, which two runs at once would share.
            port = str(free_port())
            master_args += ["--processes", str(processes), "--master-bind-port", port, "--master-port", port]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}

        def spawn(role: str, *args: str) -> None:
            log = tmp_path / f"run{len(runs) - 1}-{role}.log"
            run.logs.append(log)
            cmd = locust_cmd(locustfile, *args)
            run.procs.append(
                subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=full_env, cwd=tmp_path)
            )

        spawn("master", *master_args)
        for i in range(workers):  # once the master has bound the port it tells
            spawn(f"worker{i + 1}", "--worker", "--master-host", "127.0.0.1", "--master-port", str(run.master_port),
                  *common, *worker_args)  # fmt: skip
        return run

    yield start
    for run in runs:
        run.kill()


@pytest.fixture
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., PrometheusServer]]:
    """A factory: ``start(scrape_port)`` runs a ready Prometheus scraping 127.0.0.1:scrape_port every second
    (with ``flags``, if given, on its command line)."""
    require("prometheus", "prometheus")

    def make(scrape_port: int, **options: Any) -> PrometheusServer:
        return PrometheusServer(scrape_port, tmp_path_factory.mktemp("prometheus"), **options)

    with started(make) as start:
        yield start


@pytest.fixture
def scraping_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """``start(scrape_port, interval, flags) -> ScrapingPrometheus``, ready."""
    require("prometheus", "prometheus")

    def make(scrape_port: int | None, interval: float = 5, flags: tuple[str, ...] = ()) -> ScrapingPrometheus:
        return ScrapingPrometheus(tmp_path_factory.mktemp("prometheus"), scrape_port, interval, flags)

    with started(make) as start:
        yield start


@pytest.fixture
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushgateway]:
    require("prometheus-pushgateway", "prometheus-pushgateway")
    with started(lambda: Pushgateway(tmp_path_factory.mktemp("pushgateway"))) as start:
        yield start()


@pytest.fixture
def recorder() -> Iterator:
    """``start(statuses, tls=(cert, key), then=(status, body)) -> Recorder``; shut down at the end."""
    servers: list[Recorder] = []

    def start(
        statuses: list[int | None], tls: tuple[Path, Path] | None = None, then: tuple[int, str] = (204, "")
    ) -> Recorder:
        servers.append(Recorder(statuses, tls, then))
        return servers[-1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
