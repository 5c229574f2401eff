"""Shared fixtures: a local target server, real locust processes, scrapes checked by two parsers."""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
LOCUSTFILES = Path(__file__).resolve().parent / "locustfiles"
sys.path.insert(0, str(EXAMPLES))

import target as target_server  # noqa: E402  (examples/target.py)

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT = "text/plain; version=0.0.4; charset=utf-8"


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test fails the run: every test here can run on a machine set up by `make system-deps`,
    and a skip would leave the suite green with its claim untested."""
    if _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped:
        terminalreporter.write_line(f"FAILED: {len(_skipped)} skipped, which this suite counts as failures", red=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def promtool_check(text: str) -> None:
    """`promtool check metrics` (Prometheus's own parser and linter) accepts a text 0.0.4 exposition.

    Exit 3 means lint findings only; those about user-chosen names (the examples' `my_custom_gauge`
    "should not include type") are the user's to fix, so only our `locust_` families must lint clean.
    """
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed: `make system-deps` (Debian: apt-get install prometheus)")
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    findings = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    ours = [line for line in findings if line.startswith("locust_")]
    assert r.returncode in (0, 3) and not ours, f"promtool exit {r.returncode}: {findings}"


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


def scrape(port: int, openmetrics: bool = False) -> Samples:
    """Scrapes /metrics like Prometheus would, checks the format, and returns the parsed samples."""
    accept = "application/openmetrics-text;version=1.0.0" if openmetrics else "text/plain;version=0.0.4"
    status, headers, body = http_get(f"http://127.0.0.1:{port}/metrics", {"Accept": accept, "Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Type"] == (OPENMETRICS if openmetrics else TEXT)
    text = gzip.decompress(body).decode() if headers.get("Content-Encoding") == "gzip" else body.decode()
    if openmetrics:
        assert text.endswith("# EOF\n")
    else:
        promtool_check(text)
    return samples_of(text, openmetrics)


@pytest.fixture(scope="session")
def target():
    """The example target server on 127.0.0.1, for the whole session; yields its base URL."""
    server = target_server.serve(0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


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


#: The exporter's log line once it serves, with the port it bound (the runs ask for port 0).
SERVING = re.compile(r"Prometheus metrics on http://[^ ]+:(\d+)/metrics")


@dataclass
class LocustRun:
    """A locust test (one process, a master with workers, or --processes) run to its end."""

    _metrics_port: int | None
    web_port: int
    csv_prefix: Path
    target: str
    distributed: bool = False
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def metrics_port(self) -> int:
        """The port the master's exporter bound, read from its log (waits until it serves)."""
        if self._metrics_port is None:

            def bound() -> bool:
                found = SERVING.search(self.logs[0].read_text(errors="replace"))
                self._metrics_port = int(found.group(1)) if found else None
                return found is not None

            self.wait_until(bound, 60, "the exporter to serve")
        assert self._metrics_port is not None
        return self._metrics_port

    @metrics_port.setter
    def metrics_port(self, port: int) -> None:
        self._metrics_port = port

    def scrape(self, openmetrics: bool = False) -> Samples:
        return scrape(self.metrics_port, openmetrics)

    def web_state(self) -> dict:
        _, _, body = http_get(f"http://127.0.0.1:{self.web_port}/stats/requests", timeout=5)
        return json.loads(body)

    def wait_until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except OSError:
                pass
            if self.procs[0].poll() not in (None, 0):
                break  # the master failed: no point waiting
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\n{self.output()}")

    def wait_stopped(self, timeout: float = 60, since: Samples | None = None, by_name: bool = True) -> None:
        """Until Locust's own state says the test stopped and every process's last requests are counted.

        A worker's stop does not report; its next periodic report (every 3 s) carries its last requests to
        the master, for Locust's statistics and the exporter alike, and with them its users gauge at 0. So:
        until no user runs by the scrape, and the scrape's requests and failures equal Locust's own (those
        since the scrape `since`, when Locust's statistics were reset after it): name by name, or in all
        (`by_name=False`) where the exporter caps the names.
        """
        before = requests_by_name(since or {})

        def counted() -> bool:
            state = self.web_state()
            samples = self.scrape()
            locust = {
                (row["method"], row["name"]): (float(row["num_requests"]), float(row["num_failures"]))
                for row in state["stats"]
                if row["name"] != "Aggregated" and row["num_requests"]
            }
            now = requests_by_name(samples)
            grown = {k: (r - before.get(k, (0, 0))[0], f - before.get(k, (0, 0))[1]) for k, (r, f) in now.items()}
            if not by_name:  # Locust's web UI lists 500 names at most: its "Aggregated" row has them all
                [row] = [row for row in state["stats"] if row["name"] == "Aggregated"]
                locust = (
                    {"all": (float(row["num_requests"]), float(row["num_failures"]))} if row["num_requests"] else {}
                )
                grown = {"all": tuple(map(sum, zip(*grown.values(), strict=True)))} if grown else {}
            return (
                state["state"] == "stopped"
                and total(samples, "locust_users_running") == 0
                and {k: v for k, v in grown.items() if v[0]} == locust
            )

        self.wait_until(counted, timeout, "the test to stop and its requests to be counted")

    def finish(self, timeout: float = 60) -> list[int]:
        """Waits for every process to exit by itself; returns their exit codes."""
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        return codes

    def output(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-6000:]}" for log in self.logs if log.exists()
        )

    def csv_stats(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Locust's own final statistics: (method, name) -> (requests, failures)."""
        rows = csv.DictReader(open(f"{self.csv_prefix}_stats.csv", newline=""))
        return {
            (r["Type"], r["Name"]): (int(r["Request Count"]), int(r["Failure Count"]))
            for r in rows
            if r["Name"] != "Aggregated"
        }

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()


def locust_cmd(locustfile: Path, *args: str) -> list[str]:
    """Locust from this interpreter's environment, where the package under test is installed."""
    return [sys.executable, "-m", "locust", "-f", str(locustfile), *args]


@pytest.fixture
def run_locust(tmp_path, target):
    """Starts locust (headless-like: --autostart, then --autoquit keeps the endpoint up after the test;
    with `autostart=False` the caller drives tests through the web UI and the processes are killed at the end).

    `workers=N` starts a master and N `--worker` processes (each with `worker_args`; the master expects
    `expect_workers`, default N); `processes=N` uses `--processes N`.
    The exporter listens on 127.0.0.1 port 0: `metrics_port` reads the port it bound from the master's log,
    so no other process can take it between a port being chosen and bound.
    The caller waits with `wait_stopped()`, scrapes, then `finish()`es.
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
    ) -> LocustRun:
        run = LocustRun(None, free_port(), tmp_path / f"run{len(runs)}", target, bool(workers or processes))
        runs.append(run)
        common = ("--loglevel", "INFO")
        master_args = [
            "-H", target, "--web-host", "127.0.0.1", "--web-port", str(run.web_port),
            "--prometheus-host", "127.0.0.1", "--prometheus-port", "0",
            "--csv", str(run.csv_prefix), *common, *extra,
        ]  # fmt: skip
        if autostart:
            master_args += ["--autostart", "--autoquit", str(autoquit), "-t", f"{run_time}s",
                            "-u", str(users), "-r", str(rate)]  # fmt: skip
        master_port = free_port()
        if workers:
            expected = str(expect_workers or workers)
            master_args += ["--master", "--expect-workers", expected, "--master-bind-host", "127.0.0.1",
                            "--master-bind-port", str(master_port)]  # fmt: skip
        if processes:
            master_args += ["--processes", str(processes)]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        cmds = [locust_cmd(locustfile, *master_args)]
        cmds += [
            locust_cmd(locustfile, "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port),
                       *common, *worker_args)
            for _ in range(workers)
        ]  # fmt: skip
        for i, cmd in enumerate(cmds):
            log = tmp_path / f"run{len(runs) - 1}-{'master' if i == 0 else f'worker{i}'}.log"
            run.logs.append(log)
            run.procs.append(
                subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=full_env, cwd=tmp_path)
            )
        return run

    yield start
    for run in runs:
        run.kill()
