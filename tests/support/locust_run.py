"""A real locust run (one process, a master with workers, or --processes) and what it tells."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.scrape import Samples, http_get, promtool_check, requests_by_name, samples_of, scrape, scrape_text, total
from support.server import listening_ports

FORM = {"Content-Type": "application/x-www-form-urlencoded"}

#: The exporter's log line once it serves, with the port it bound (the runs ask for port 0).
SERVING = re.compile(r"Prometheus metrics on https?://[^ ]+:(\d+)/metrics")


@dataclass
class LocustRun:
    """A locust test (one process, a master with workers, or --processes) run to its end."""

    _metrics_port: int | None
    csv_prefix: Path
    target: str
    distributed: bool = False
    #: Whether `finish()` ends the run with SIGTERM (a run kept up by --autoquit once its test stopped), or waits
    #: for it to quit by itself (a headless run).
    terminate: bool = False
    #: promtool's findings expected of the locustfile's own metrics (see `promtool_check`).
    lint: tuple[str, ...] = ()
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    #: The master's ports other than the exporter's and the web UI's (its port for workers).
    _master_port: int | None = None
    _web_port: int | None = None

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

    def _other_ports(self) -> set[int]:
        """The ports the master listens on besides the exporter's: the web UI's and, distributed, the workers'."""
        return listening_ports(self.procs[0].pid) - {self.metrics_port}

    @property
    def master_port(self) -> int:
        """The port a master (given `--master-bind-port 0`) bound for its workers: the one that greets a new
        connection as ZeroMQ does, with byte 0xFF, before the client says anything."""
        if self._master_port is None:

            def greets() -> bool:
                for port in self._other_ports() - {self._web_port}:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                        try:
                            if s.recv(1) == b"\xff":
                                self._master_port = port
                                return True
                        except TimeoutError:
                            pass  # the web UI's port (or a slow greeting: the next poll)
                return False

            self.wait_until(greets, 60, "the master to bind its port for workers")
        assert self._master_port is not None
        return self._master_port

    @property
    def web_port(self) -> int:
        """The port of the web UI (Locust is given `--web-port 0`): the master's port that serves Locust's
        statistics (another exporter's answers HTTP too)."""
        if self._web_port is None:

            def answers_http() -> bool:
                for port in self._other_ports() - {self._master_port}:
                    try:
                        status, _, body = http_get(f"http://127.0.0.1:{port}/stats/requests", timeout=2)
                        if status == 200 and "stats" in json.loads(body):
                            self._web_port = port
                            return True
                    except (OSError, http.client.HTTPException, ValueError):
                        pass  # the workers' port, another exporter's
                return False

            self.wait_until(answers_http, 60, "the web UI to serve")
        assert self._web_port is not None
        return self._web_port

    def scrape(self, openmetrics: bool = False, lint: bool = False) -> Samples:
        """The master's /metrics, parsed; checked by promtool too with `lint` (`wait_stopped` lints its final one)."""
        return scrape(self.metrics_port, openmetrics, lint)

    def swarm(self, users: int, rate: float, run_time: int | None = None, workers: int = 0) -> None:
        """Starts a test through the web UI (as its form does), once `workers` workers are ready."""
        if workers:
            ready = lambda: sum(w["state"] == "ready" for w in self.web_state()["workers"]) == workers  # noqa: E731
            self.wait_until(ready, 60, f"{workers} ready workers")
        form = {
            "user_count": users,
            "spawn_rate": rate,
            "host": self.target,
            **({"run_time": run_time} if run_time else {}),
        }
        status, _, body = http_get(
            f"http://127.0.0.1:{self.web_port}/swarm", FORM, method="POST", data=urllib.parse.urlencode(form).encode()
        )
        assert status == 200 and json.loads(body)["success"], body

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

    def wait_stopped(self, timeout: float = 60, since: Samples | None = None, by_name: bool = True) -> Samples:
        """Until Locust's own state says the test stopped and every process's last requests are counted.

        A worker's stop does not report; its next periodic report (every 3 s) carries its last requests to
        the master, for Locust's statistics and the exporter alike, and with them its users gauge at 0. So:
        until no user runs by the scrape, and the scrape's requests and failures equal Locust's own (those
        since the scrape `since`, when Locust's statistics were reset after it): name by name, or in all
        (`by_name=False`) where the exporter caps the names. Returns a scrape made then, which promtool checked.
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
        text = scrape_text(self.metrics_port)
        promtool_check(text, self.lint)
        return samples_of(text)

    def finish(self, timeout: float = 60) -> list[int]:
        """Ends the run once its checks are done: SIGTERM to the master of a run kept up by --autoquit (Locust
        quits as at the end of --autoquit, with the exit code it would have had; a master tells its workers to
        quit), or waits for a headless run to quit by itself. Returns every process's exit code."""
        if self.terminate and self.procs[0].poll() is None:
            self.procs[0].send_signal(signal.SIGTERM)
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

    @property
    def json_file(self) -> Path:
        """Locust's final statistics, which it writes when it quits (the runs are given `--json-file`)."""
        return self.csv_prefix.parent / f"{self.csv_prefix.name}.json"

    def final_stats(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Locust's own final statistics, from `--json-file` (its `--csv` files are rewritten every second while
        it runs, so a run that quits at once can leave them a second behind): (method, name) -> (requests,
        failures)."""
        return {(e["method"], e["name"]): (e["num_requests"], e["num_failures"]) for e in self._final_entries()}

    def final_seconds(self) -> dict[tuple[str, str], float]:
        """Locust's total response time by (method, name), in seconds, from `--json-file`."""
        return {(e["method"], e["name"]): e["total_response_time"] / 1000 for e in self._final_entries()}

    def _final_entries(self) -> list[dict]:
        assert self.procs[0].poll() is not None, "Locust writes --json-file when it quits: finish() first"
        return json.loads(self.json_file.read_text())

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()


def locust_cmd(locustfile: Path, *args: str) -> list[str]:
    """Locust from this interpreter's environment, where the package under test is installed."""
    return [sys.executable, "-m", "locust", "-f", str(locustfile), *args]


def assert_durations_exact(samples: Samples, locust_seconds: dict[tuple[str, str], float]) -> None:
    """The duration histogram's `_sum` per method and name is Locust's total response time (to float rounding)."""
    assert locust_seconds, "Locust recorded no requests"
    for (method, name), seconds in locust_seconds.items():
        got = total(samples, "locust_request_duration_seconds_sum", method=method, name=name)
        assert got == pytest.approx(seconds, rel=1e-9, abs=1e-12), (method, name)


def assert_exact(samples: Samples, locust_stats: dict[tuple[str, str], tuple[int, int]]) -> None:
    """Requests and failures per method and name, and the histogram counts, equal Locust's."""
    assert locust_stats, "Locust recorded no requests"
    assert requests_by_name(samples) == {k: (float(r), float(f)) for k, (r, f) in locust_stats.items()}
    for (method, name), (requests, _) in locust_stats.items():
        assert total(samples, "locust_request_duration_seconds_count", method=method, name=name) == requests
        inf = total(samples, "locust_request_duration_seconds_bucket", method=method, name=name, le="+Inf")
        assert inf == requests
