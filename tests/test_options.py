"""Locust-native options, the plugin that needs no code, the run's identity, and a bind failure."""

from __future__ import annotations

import socket
import subprocess
import sys

from conftest import EXAMPLES, LOCUSTFILES, locust_cmd, total
from test_e2e import assert_exact

SEED_PLAIN = EXAMPLES / "locustfile.py"


def plugin_path() -> str:
    out = subprocess.run([sys.executable, "-m", "locust_prometheus_exporter"], capture_output=True, text=True)
    return out.stdout.strip()


def test_options_from_environment_set_buckets_labels_and_test_info(run_locust):
    env = {"LOCUST_PROMETHEUS_BUCKETS": "0.5,5", "LOCUST_PROMETHEUS_LABELS": "env=ci, generator=lg1"}
    run = run_locust(LOCUSTFILES / "busy.py", users=2, rate=2, run_time=3, env=env)
    run.wait_stopped()
    samples = run.scrape()
    assert run.finish() == [0], run.output()
    les = {dict(labels)["le"] for name, labels in samples if name == "locust_request_duration_seconds_bucket"}
    assert les == {"0.5", "5.0", "+Inf"}
    for _name, labels in samples:
        assert ("env", "ci") in labels and ("generator", "lg1") in labels
    [(name, labels)] = [k for k in samples if k[0] == "locust_test_info"]
    info = dict(labels)
    assert (info["locustfile"], info["host"], info["target_users"]) == ("busy.py", run.target, "2")
    assert info["run_id"]
    assert samples[(name, labels)] == 1


def test_plugin_enables_the_exporter_without_code(run_locust, tmp_path):
    plain = tmp_path / "plain.py"
    plain.write_text(
        "from locust import HttpUser, constant, task\n\n"
        "class U(HttpUser):\n    wait_time = constant(0.1)\n\n    @task\n    def t(self):\n        self.client.get('/')\n"
    )
    run = run_locust(f"{plain},{plugin_path()}", users=2, rate=2, run_time=3)  # type: ignore[arg-type]
    run.wait_stopped()
    samples = run.scrape()
    assert run.finish() == [0], run.output()
    assert total(samples, "locust_requests_total", name="/") == run.csv_stats()[("GET", "/")][0]


def test_plugin_adds_no_second_exporter(run_locust):
    run = run_locust(f"{SEED_PLAIN},{plugin_path()}", users=1, rate=1, run_time=2)  # type: ignore[arg-type]
    run.wait_stopped()
    assert total(run.scrape(), "locust_users_total") == 1
    assert run.finish() == [0], run.output()


def test_bind_failure_stops_locust_with_a_clear_error(target, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = locust_cmd(SEED_PLAIN, "--headless", "-u", "1", "-t", "5s", "-H", target,
                         "--prometheus-host", "127.0.0.1", "--prometheus-port", str(port))  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr
    assert "Address already in use" in r.stderr


def test_workers_never_bind(run_locust):
    """Workers are given a taken port (by environment); only the master binds (its own, by option)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {"LOCUST_PROMETHEUS_HOST": "127.0.0.1", "LOCUST_PROMETHEUS_PORT": str(taken.getsockname()[1])}
        run = run_locust(SEED_PLAIN, users=2, rate=2, run_time=3, workers=2, env=env)
        run.wait_stopped()
        assert total(run.scrape(), "locust_users_total") == 2
        assert run.finish() == [0, 0, 0], run.output()
    assert "cannot listen" not in run.output()


def test_buckets_given_to_the_master_only_reach_the_workers(run_locust):
    """Workers started without `--prometheus-buckets` take the master's with the test, before any request."""
    run = run_locust(LOCUSTFILES / "busy.py", users=2, rate=2, run_time=4, workers=2,
                     extra=("--prometheus-buckets", "0.5,5"))  # fmt: skip
    run.wait_stopped()
    samples = run.scrape()
    assert run.finish() == [0, 0, 0], run.output()
    les = {dict(labels)["le"] for name, labels in samples if name == "locust_request_duration_seconds_bucket"}
    assert les == {"0.5", "5.0", "+Inf"}
    assert_exact(samples, run.csv_stats())
    assert "left out" not in run.output()
