"""Distributed mode: one exact endpoint on the master, fed by Locust's own worker reports."""

from __future__ import annotations

import itertools
import signal
import time

from support.locust_run import LocustRun, assert_exact
from support.paths import EXAMPLES, LOCUSTFILES
from support.scrape import Samples, http_get, total

BUSY = LOCUSTFILES / "busy.py"


def counters(samples: Samples) -> Samples:
    """The samples that must never go down: counters, histogram buckets, counts and sums."""
    return {k: v for k, v in samples.items() if k[0].endswith(("_total", "_bucket", "_count", "_sum"))}


def assert_monotonic(before: Samples, after: Samples) -> None:
    for key, value in counters(before).items():
        assert after.get(key, 0.0) >= value, f"{key} went down: {value} -> {after.get(key)}"


def assert_custom_metrics_summed(samples: Samples, stats) -> None:
    """The workers' custom counters and histograms add up to what Locust counted."""
    requests = sum(r for r, _ in stats.values())
    assert total(samples, "busy_tasks_total", task="index") == stats[("GET", "/")][0]
    assert total(samples, "busy_tasks_total", task="about") == stats[("GET", "/about/")][0]
    assert total(samples, "busy_response_bytes_count") == requests


def test_master_and_two_workers_exact(run_locust):
    run = run_locust(BUSY, users=6, rate=6, run_time=8, workers=2)
    run.wait_until(lambda: total(run.scrape(), "locust_users_running") == 6, 40, "6 users on the master")
    run.wait_until(lambda: total(run.scrape(), "busy_users") == 6, 10, "the custom gauge summed over workers")
    mid = run.scrape()
    assert total(mid, "locust_workers", state="running") == 2
    assert total(mid, "busy_users_max") == 3
    for per_worker in ("busy_users_per_worker", "locust_users_running"):
        series = {dict(labels)["worker"]: v for (n, labels), v in mid.items() if n == per_worker}
        assert sorted(series.values()) == [3, 3] and len(series) == 2, per_worker
    final = run.wait_stopped()
    assert run.finish() == [0, 0, 0], run.output()
    stats = run.final_stats()
    assert_exact(final, stats)
    assert_custom_metrics_summed(final, stats)
    assert total(final, "locust_users_total") == 6
    assert_monotonic(mid, final)
    assert "Address already in use" not in run.output()


def test_processes_mode_runs_the_example_unchanged_and_exact(run_locust):
    run = run_locust(EXAMPLES / "locustfile_custom_metrics.py", users=4, rate=4, run_time=8, processes=2)
    run.wait_until(lambda: total(run.scrape(), "my_custom_gauge") == 4, 40, "the example's gauge to show all users")
    final = run.wait_stopped()
    assert run.finish() == [0], run.output()
    stats = run.final_stats()
    assert_exact(final, stats)
    assert total(final, "my_custom_counter_total") == stats[("GET", "/")][0]
    assert total(final, "locust_users_total") == 4
    assert "Address already in use" not in run.output()


def test_worker_with_processes_runs_the_example_unchanged_and_exact(run_locust):
    """`--worker --processes 2`: the parent only forks; its two children are the workers."""
    custom = EXAMPLES / "locustfile_custom_metrics.py"
    run = run_locust(custom, users=4, rate=4, run_time=6, workers=1, worker_args=("--processes", "2"), expect_workers=2)
    final = run.wait_stopped()
    assert run.finish() == [0, 0], run.output()
    stats = run.final_stats()
    assert_exact(final, stats)
    assert total(final, "my_custom_counter_total") == stats[("GET", "/")][0]
    assert total(final, "locust_users_total") == 4


def test_worker_killed_mid_run_loses_nothing_reported(run_locust):
    run = run_locust(BUSY, users=4, rate=4, run_time=16, workers=2, extra=("--exit-code-on-error", "0"))
    run.wait_until(lambda: total(run.scrape(), "locust_users_running") == 4, 40, "4 users on the master")
    run.wait_until(lambda: total(run.scrape(), "locust_requests_total") > 50, 20, "traffic")
    # Both workers' values are in (their index + 1): 1 and 2.
    run.wait_until(lambda: total(run.scrape(), "busy_index_sum") == 3, 10, "both workers' gauges")
    history = [run.scrape()]
    indexes = {dict(labels)["worker"]: v for (n, labels), v in history[0].items() if n == "busy_index_all"}
    assert sorted(indexes.values()) == [1, 2], indexes
    run.procs[1].send_signal(signal.SIGKILL)
    run.procs[1].wait()

    def missing_seen() -> bool:
        history.append(run.scrape())
        return total(history[-1], "locust_workers", state="missing") == 1

    run.wait_until(missing_seen, 20, "the master to mark the killed worker missing")
    # The killed worker's users and gauge values drop out; the survivor's remain.
    run.wait_until(lambda: total(run.scrape(), "locust_users_running") == 2, 10, "users of the survivor only")
    assert total(run.scrape(), "busy_users") == 2
    # The modes without `live` keep the killed worker's last value; `mostrecent` is the survivor's, which
    # keeps setting it.
    samples = run.scrape()
    [alive] = [dict(labels)["worker"] for (n, labels) in samples if n == "busy_users_per_worker"]  # liveall
    survivor = indexes[alive]
    assert total(samples, "busy_index_livemin") == survivor
    assert [total(samples, f"busy_index_{mode}") for mode in ("sum", "max", "min")] == [3, 2, 1]
    assert {dict(labels)["worker"]: v for (n, labels), v in samples.items() if n == "busy_index_all"} == indexes
    run.wait_until(lambda: total(run.scrape(), "busy_index_mostrecent") == survivor, 10, "the survivor's report")
    # Checked: the test need not run its course.
    assert http_get(f"http://127.0.0.1:{run.web_port}/stop", method="POST")[0] == 200
    history.append(run.wait_stopped())
    for before, after in itertools.pairwise(history):
        assert_monotonic(before, after)
    assert run.finish() == [0, -signal.SIGKILL, 0], run.output()
    stats = run.final_stats()
    # Locust's statistics keep what the killed worker reported; so do the exporter's counters.
    assert_exact(history[-1], stats)
    assert_custom_metrics_summed(history[-1], stats)


def test_two_tests_in_one_master_process_stay_monotonic(run_locust):
    run: LocustRun = run_locust(BUSY, workers=2, autostart=False)
    web = f"http://127.0.0.1:{run.web_port}"
    run.wait_until(lambda: total(run.scrape(), "locust_workers", state="ready") == 2, 40, "2 ready workers")
    results: list[tuple[Samples, dict]] = []
    for _ in range(2):
        run.swarm(4, 4)
        run.wait_until(lambda: total(run.scrape(), "locust_users_running") == 4, 30, "4 users")
        time.sleep(2)
        assert http_get(f"{web}/stop", method="POST")[0] == 200
        run.wait_stopped(since=results[-1][0] if results else None)
        results.append((run.scrape(), run.web_state()))
    (first, _), (second, locust_second) = results
    assert_monotonic(first, second)
    # Locust's statistics restart with each test; the exporter's counters carry on.
    for row in locust_second["stats"]:
        if row["name"] == "Aggregated":
            continue
        labels = {"method": row["method"], "name": row["name"]}
        grew = total(second, "locust_requests_total", **labels) - total(first, "locust_requests_total", **labels)
        assert grew == row["num_requests"]
    assert total(second, "locust_users_total") == 8
    # One locust_test_info series at a time, with a new run id for each test.
    run_ids = []
    for samples in (first, second):
        [(labels, value)] = [(dict(ls), v) for (n, ls), v in samples.items() if n == "locust_test_info"]
        assert value == 1 and labels["target_users"] == "4", labels
        run_ids.append(labels["run_id"])
    assert run_ids[0] != run_ids[1] and all(run_ids), run_ids


#: A histogram with other buckets on the worker than on the master, beside a counter alike on both.
DIFFERENT = """
import sys

from locust import HttpUser, constant, task
from locust_prometheus_exporter import Counter, Histogram, PrometheusExporter

exporter = PrometheusExporter("127.0.0.1", 0)
shape = Histogram("shape_seconds", "Buckets differ", buckets=[2.0] if "--worker" in sys.argv else [1.0])
alike = Counter("alike", "The same everywhere")


class U(HttpUser):
    wait_time = constant(0.1)

    @task
    def t(self):
        self.client.get("/")
        shape.observe(0.5)
        alike.inc()
"""


def test_a_family_defined_differently_on_a_worker_is_left_out_and_logged_once(run_locust, tmp_path):
    locustfile = tmp_path / "different.py"
    locustfile.write_text(DIFFERENT)
    run = run_locust(locustfile, users=2, rate=2, run_time=7, workers=1)  # three reports at least
    final = run.wait_stopped()
    assert run.finish() == [0, 0], run.output()
    requests = run.final_stats()[("GET", "/")][0]
    assert total(final, "alike_total") == requests > 0, "the rest of the report is taken"
    assert total(final, "shape_seconds_count") == 0 and total(final, "shape_seconds_bucket", le="+Inf") == 0
    master = run.logs[0].read_text()
    assert master.count("defined differently") == 1 and "shape_seconds" in master, master
