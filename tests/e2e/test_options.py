"""Locust-native options, the plugin that needs no code, the run's identity, and a bind failure."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest
from support.locust_run import SERVING, assert_exact, locust_cmd
from support.paths import EXAMPLES, LOCUSTFILES
from support.scrape import Samples, http_get, requests_by_name, samples_of, total
from support.server import listening

EXAMPLE_PLAIN = EXAMPLES / "locustfile.py"


def bucket_bounds(samples: Samples) -> set[str]:
    """The `le` values of locust_request_duration_seconds."""
    return {dict(labels)["le"] for name, labels in samples if name == "locust_request_duration_seconds_bucket"}


def plugin_path() -> str:
    out = subprocess.run([sys.executable, "-m", "locust_prometheus_exporter"], capture_output=True, text=True)
    return out.stdout.strip()


@pytest.mark.parametrize(
    ("conf", "env", "buckets", "labels"),
    [
        (None, {"LOCUST_PROMETHEUS_BUCKETS": "0.5,5", "LOCUST_PROMETHEUS_LABELS": "env=ci, generator=lg1"},
         {"0.5", "5.0", "+Inf"}, {"env": "ci", "generator": "lg1"}),
        # locust.conf in the working directory sets the options; the environment wins over it.
        ("prometheus-buckets = 0.25, 2.5\nprometheus-labels = source=conf, conf=yes\n",
         {"LOCUST_PROMETHEUS_LABELS": "source=env"}, {"0.25", "2.5", "+Inf"}, {"source": "env"}),
    ],
    ids=["environment", "locust.conf-and-environment"],
)  # fmt: skip
def test_options_set_buckets_labels_and_test_info(run_locust, tmp_path, conf, env, buckets, labels):
    if conf:
        (tmp_path / "locust.conf").write_text(conf)
    run = run_locust(LOCUSTFILES / "busy.py", users=2, rate=2, run_time=3, env=env)
    samples = run.wait_stopped()
    assert run.finish() == [0], run.output()
    assert bucket_bounds(samples) == buckets
    for _name, sample_labels in samples:
        assert labels.items() <= dict(sample_labels).items() and "conf" not in dict(sample_labels), sample_labels
    [(name, info_labels)] = [k for k in samples if k[0] == "locust_test_info"]
    info = dict(info_labels)
    assert (info["locustfile"], info["host"], info["target_users"]) == ("busy.py", run.target, "2")
    assert info["run_id"]
    assert samples[(name, info_labels)] == 1


#: A locustfile without an exporter, with a custom counter.
PLAIN = """
from locust import HttpUser, constant, task
from locust_prometheus_exporter import Counter, PrometheusExporter

tasks = Counter("plain_tasks", "Tasks run")

class U(HttpUser):
    wait_time = constant(0.1)

    @task
    def t(self):
        self.client.get("/")
        tasks.inc()
"""


def test_plugin_enables_the_exporter_without_code(run_locust, tmp_path):
    plain = tmp_path / "plain.py"
    plain.write_text(PLAIN)
    run = run_locust(f"{plain},{plugin_path()}", users=2, rate=2, run_time=3)  # type: ignore[arg-type]
    samples = run.wait_stopped()
    assert run.finish() == [0], run.output()
    assert total(samples, "locust_requests_total", name="/") == run.final_stats()[("GET", "/")][0]


def test_plugin_adds_no_second_exporter(run_locust):
    """The plain example makes an exporter; the plugin, loaded after it, would make one on its default port 9091.
    The test holds 9091 (or another process does): a second exporter would fail to bind it, which stops Locust."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("0.0.0.0", 9091))
            taken.listen()
        except OSError:
            assert listening(9091), "9091 neither free nor listening"  # held by someone else: as good
        run = run_locust(f"{EXAMPLE_PLAIN},{plugin_path()}", users=1, rate=1, run_time=3)  # type: ignore[arg-type]
        run.wait_stopped()
        assert run.finish() == [0], run.output()
    assert len(SERVING.findall(run.output())) == 1, run.output()
    assert "cannot listen" not in run.output()


def test_several_exporters_in_one_process_take_the_options_on_the_first(run_locust, tmp_path):
    """Both exporters serve every metric; `--prometheus-host`/`--prometheus-port` move only the first made."""
    locustfile = tmp_path / "two.py"
    locustfile.write_text(PLAIN + "first = PrometheusExporter('::1', 0)\nsecond = PrometheusExporter('::1', 0)\n")
    run = run_locust(locustfile, users=2, rate=2, run_time=3)
    run.wait_stopped()
    # Both, in the order they were made: the first on the options' host, the second on its own.
    served = re.findall(r"Prometheus metrics on http://(\S+):(\d+)/metrics", run.output())
    assert [host for host, _ in served] == ["127.0.0.1", "::1"], served
    first = run.scrape()
    _, _, body = http_get(f"http://[::1]:{served[1][1]}/metrics")
    second = samples_of(body.decode())
    assert run.finish() == [0], run.output()
    assert (
        requests_by_name(first)
        == requests_by_name(second)
        == {k: (float(r), float(f)) for k, (r, f) in run.final_stats().items()}
    )
    assert total(first, "plain_tasks_total") == total(second, "plain_tasks_total") > 0


def test_locust_stats_resets_leave_the_counters_alone(run_locust):
    """`--reset-stats` (after spawning) and the web UI's reset (mid-run) clear Locust's statistics only."""
    run = run_locust(LOCUSTFILES / "busy.py", users=4, rate=2, run_time=8, extra=("--reset-stats",))
    run.wait_until(lambda: total(run.scrape(), "locust_users_running") == 4, 30, "4 users")
    run.wait_until(lambda: total(run.scrape(), "locust_requests_total") > 50, 20, "traffic")
    before = run.scrape()
    status, _, _ = http_get(f"http://127.0.0.1:{run.web_port}/stats/reset", method="POST")
    assert status == 200
    after = run.scrape()
    assert all(after[key] >= value for key, value in before.items() if key[0] == "locust_requests_total")
    run.wait_until(lambda: run.web_state()["state"] == "stopped", 30, "the test to stop")
    final = run.scrape()
    assert run.finish() == [0], run.output()
    # Every request is counted, as the locustfile's own counter (incremented after each one) says;
    # Locust's statistics hold only those after the last reset.
    counted = total(final, "locust_requests_total")
    assert counted == total(final, "busy_tasks_total")
    locust = sum(r for r, _ in run.final_stats().values())
    assert total(before, "locust_requests_total") <= counted - locust, (before, counted, locust)


def test_bind_failure_stops_locust_with_a_clear_error(target, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = locust_cmd(EXAMPLE_PLAIN, "--headless", "-u", "1", "-t", "5s", "-H", target,
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
        run = run_locust(EXAMPLE_PLAIN, users=2, rate=2, run_time=3, workers=2, env=env)
        samples = run.wait_stopped()
        assert total(samples, "locust_users_total") == 2
        assert run.finish() == [0, 0, 0], run.output()
    assert "cannot listen" not in run.output()


def test_buckets_given_to_the_master_only_reach_the_workers(run_locust):
    """Workers started without `--prometheus-buckets` take the master's with the test, before any request."""
    run = run_locust(LOCUSTFILES / "busy.py", users=2, rate=2, run_time=4, workers=2,
                     extra=("--prometheus-buckets", "0.5,5"))  # fmt: skip
    samples = run.wait_stopped()
    assert run.finish() == [0, 0, 0], run.output()
    assert bucket_bounds(samples) == {"0.5", "5.0", "+Inf"}
    assert_exact(samples, run.final_stats())
    assert "left out" not in run.output()
