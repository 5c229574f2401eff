"""Scale: a master merging many workers' reports, the cap on request names, the load generator's health."""

from __future__ import annotations

import collections
import json
import math
import os
import subprocess
import sys
import textwrap
import time

import pytest
from locust_prometheus_exporter._native import OVERFLOW_NAME
from prometheus_client.parser import text_string_to_metric_families
from support.locust_run import locust_cmd
from support.paths import EXAMPLES, LOCUSTFILES
from support.prometheus import final_scrape, scrape_runs
from support.scrape import requests_by_name, total


def run_script(body: str) -> dict:
    """Runs `body` in a fresh interpreter (its own registry, apart from this session's) and returns its JSON."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(body)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def series(text: str, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one sample name, keyed by their sorted labels."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == metric
    }


# Worker w's reports, made in one process: each worker starts from zero (the state a forked child gets),
# records requests and reports what changed, three times; the expected totals are counted alongside.
# The master then starts from zero too and applies every report, rounds interleaved as they would arrive.
HUNDRED_WORKERS = """
    import json
    from collections import Counter
    from locust_prometheus_exporter import CollectorRegistry, _native

    WORKERS, NAMES, ROUNDS = 100, 30, 3
    registry = CollectorRegistry()
    listener = _native.RequestListener(registry)
    expected, durations = Counter(), Counter()
    reports = []
    for w in range(WORKERS):
        _native.after_fork_in_child()
        mine = []
        for r in range(ROUNDS):
            # Each round touches a different subset of names: reports carry only what changed.
            for i in range(NAMES):
                for _ in range((w + i * r) % 4 if (i + r) % 3 else 0):
                    listener(request_type="GET", name=f"/n/{i}", response_time=float(w % 50), response_length=10)
                    expected[f"/n/{i}"] += 1
                    durations[f"/n/{i}"] += (w % 50) / 1000
            mine.append(registry.take_report())
        reports.append(mine)
    _native.after_fork_in_child()
    for r in range(ROUNDS):
        for w in range(WORKERS):
            registry.apply_report(f"worker-{w}", reports[w][r])
    # Killed workers: Locust marks them missing; what they reported stays counted.
    registry.set_live_workers([f"worker-{w}" for w in range(0, WORKERS, 2)])
    print(json.dumps({"expected": expected, "durations": durations, "text": registry.render().decode()}))
"""


def test_a_hundred_workers_reports_merge_exactly():
    got = run_script(HUNDRED_WORKERS)
    text = got["text"]
    requests = series(text, "locust_requests_total")
    assert requests, "nothing merged"
    by_name = {dict(labels)["name"]: value for labels, value in requests.items()}
    assert by_name == got["expected"]
    counts = series(text, "locust_request_duration_seconds_count")
    assert {dict(k)["name"]: v for k, v in counts.items()} == got["expected"]
    sums = {dict(k)["name"]: v for k, v in series(text, "locust_request_duration_seconds_sum").items()}
    assert sums.keys() == got["durations"].keys()
    for name, value in got["durations"].items():
        assert abs(sums[name] - value) < 1e-9, name
    length = {dict(k)["name"]: v for k, v in series(text, "locust_response_length_bytes_total").items()}
    assert length == {name: 10 * n for name, n in got["expected"].items()}


MANY_NAMES = LOCUSTFILES / "many_names.py"


def assert_capped_and_exact(samples, stats, cap: int) -> None:
    """`cap` names plus the overflow one, each admitted name one of Locust's with Locust's count; every request
    counted; overflows counted alike."""
    requests = {labels: v for (metric, labels), v in samples.items() if metric == "locust_requests_total"}
    names = {dict(labels)["name"] for labels in requests}
    assert OVERFLOW_NAME in names and len(names) == cap + 1, sorted(names)[:5]
    admitted = {
        ("GET", name): (r, f) for (method, name), (r, f) in requests_by_name(samples).items() if name != OVERFLOW_NAME
    }
    assert admitted == {k: (float(r), float(f)) for k, (r, f) in stats.items() if k in admitted}
    assert admitted.keys() <= stats.keys(), "admitted names are Locust's own"
    assert sum(requests.values()) == sum(r for r, _ in stats.values()), "totals are exact"
    assert total(samples, "locust_exporter_names_overflowed_total") == total(
        samples, "locust_requests_total", name=OVERFLOW_NAME
    )
    durations = {dict(k)["name"] for (m, k) in samples if m == "locust_request_duration_seconds_count"}
    assert durations == names, "the per-request families share the admitted names"


def test_name_cap_in_a_single_process_keeps_totals_exact(run_locust):
    run = run_locust(MANY_NAMES, users=2, rate=2, run_time=3, env={"LOCUST_PROMETHEUS_MAX_NAMES": "30"})
    samples = run.wait_stopped(by_name=False)
    assert run.finish() == [0], run.output()
    assert_capped_and_exact(samples, run.final_stats(), 30)
    log = run.logs[0].read_text()
    assert log.count("--prometheus-max-names") == 1, "the warning names the option, once"


def test_name_cap_on_a_master_applies_to_the_merged_view_and_reaches_the_workers(run_locust):
    # Each worker has names of its own: within its own cap each may pass 20, the master's view may not.
    # One user per worker makes fewer names than the default cap (1,000) in 3 s: a worker that warns of the cap
    # was given the master's.
    run = run_locust(MANY_NAMES, users=2, rate=2, run_time=3, workers=2, extra=("--prometheus-max-names", "20"))
    samples = run.wait_stopped(by_name=False)
    assert run.finish() == [0, 0, 0], run.output()
    stats = run.final_stats()
    assert_capped_and_exact(samples, stats, 20)
    by_process = collections.Counter(int(name.split("/")[2]) for _, name in stats)  # /items/<pid>/<n>
    assert max(by_process.values()) < 1000, "a worker might have passed the default cap"
    assert run.logs[0].read_text().count("--prometheus-max-names") == 1, "the master's own cap"
    # A worker past 20 names of its own warns of the cap, once; one at least is.
    past = [log for proc, log in zip(run.procs[1:], run.logs[1:], strict=True) if by_process[proc.pid] > 20]
    assert past, by_process
    for log in past:
        assert log.read_text().count("--prometheus-max-names") == 1, log.name


@pytest.mark.parametrize("value", ["-1", "many"])
def test_a_bad_max_names_option_is_a_usage_error(value, tmp_path):
    cmd = locust_cmd(MANY_NAMES, "--headless", "-t", "1s", "--prometheus-max-names", value)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "--prometheus-max-names" in r.stderr and "Traceback" not in r.stderr


def test_max_names_argument():
    got = run_script(
        """
        import json
        import locust
        from locust_prometheus_exporter import REGISTRY, PrometheusExporter

        errors = []
        for bad in (-1, "10", True):
            try:
                PrometheusExporter("127.0.0.1", 0, max_names=bad)
            except (TypeError, ValueError) as e:
                errors.append(type(e).__name__)
        PrometheusExporter("127.0.0.1", 0, max_names=2)
        for name in ("/a", "/b", "/c", "/a", "/d"):
            locust.events.request.fire(request_type="GET", name=name, response_time=1.0, response_length=0,
                                       exception=None, context={})
        print(json.dumps({"errors": errors, "text": REGISTRY.render().decode()}))
        """
    )
    assert got["errors"] == ["ValueError", "TypeError", "TypeError"]
    by_name = {dict(k)["name"]: v for k, v in series(got["text"], "locust_requests_total").items()}
    assert by_name == {"/a": 2, "/b": 1, OVERFLOW_NAME: 2}
    assert series(got["text"], "locust_exporter_names_overflowed_total") == {(): 2}


def test_custom_metric_past_max_series_drops_new_series_without_raising():
    got = run_script(
        """
        import io, json, logging
        from locust_prometheus_exporter import REGISTRY, Counter, Histogram

        log = io.StringIO()
        logging.getLogger("locust_prometheus_exporter").addHandler(logging.StreamHandler(log))
        c = Counter("per_user", "h", ["user"], max_series=2)
        h = Histogram("per_user_seconds", "h", ["user"], buckets=[1.0])
        for user in ("a", "b", "c", "d", "a"):
            c.labels(user).inc()
            h.labels(user).observe(0.5)
        by_default = Counter("per_id", "h", ["id"])
        for i in range(10_001):
            by_default.labels(str(i)).inc()
        print(json.dumps({"log": log.getvalue(), "text": REGISTRY.render().decode()}))
        """
    )
    text = got["text"]
    assert series(text, "per_user_total") == {(("user", "a"),): 2, (("user", "b"),): 1}
    assert len(series(text, "per_user_seconds_count")) == 4, "the default is far"
    # The default: 10,000 series.
    assert set(series(text, "per_id_total")) == {(("id", str(i)),) for i in range(10_000)}
    assert series(text, "locust_exporter_series_dropped_total") == {
        (("metric", "per_user"),): 2,
        (("metric", "per_id"),): 1,
    }
    assert got["log"].count("max_series") == 2, got["log"]  # once per metric


HEALTH = LOCUSTFILES / "health.py"
PROCESS_METRICS = (
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "process_threads",
)


def health(samples, metric: str) -> dict[str, float]:
    return {dict(labels)["worker"]: v for (m, labels), v in samples.items() if m == metric}


def assert_process_metrics(samples, pid: int) -> None:
    """The seven standard metrics, of the serving process (read again from /proc: they move a little)."""
    for name in PROCESS_METRICS:
        assert (name, ()) in samples, name
    value = {name: samples[(name, ())] for name in PROCESS_METRICS}
    with open(f"/proc/{pid}/stat") as f:
        threads = int(f.read().rsplit(")", 1)[1].split()[17])
    rss = int(open(f"/proc/{pid}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert abs(value["process_threads"] - threads) <= 2
    assert abs(value["process_open_fds"] - len(os.listdir(f"/proc/{pid}/fd"))) <= 5
    assert value["process_open_fds"] < value["process_max_fds"]
    assert 0.5 * rss < value["process_resident_memory_bytes"] < 2 * rss
    assert value["process_virtual_memory_bytes"] > value["process_resident_memory_bytes"]
    assert time.time() - 120 < value["process_start_time_seconds"] <= time.time()


def test_health_of_a_single_process(run_locust):
    run = run_locust(HEALTH, users=2, rate=2, run_time=4)
    samples = run.wait_stopped()
    assert_process_metrics(samples, run.procs[0].pid)
    assert health(samples, "locust_cpu_usage_percent").keys() == {"local"}
    memory = health(samples, "locust_memory_usage_bytes")
    assert memory.keys() == {"local"} and memory["local"] > 10e6
    assert run.finish() == [0], run.output()


def test_health_of_a_master_and_its_workers(run_locust):
    run = run_locust(HEALTH, users=2, rate=2, run_time=4, workers=2)
    samples = run.wait_stopped()
    assert_process_metrics(samples, run.procs[0].pid)
    ids = {c["id"] for c in run.web_state()["workers"]}
    assert len(ids) == 2
    metrics = ("locust_cpu_usage_percent", "locust_memory_usage_bytes")
    # A worker's measure reaches the master with its next heartbeat (every second): poll for it.
    run.wait_until(
        lambda: all(health(run.scrape(), m).keys() == ids | {"master"} for m in metrics), 15, "every process's measures"
    )
    samples = run.scrape()
    assert all(v > 10e6 for v in health(samples, "locust_memory_usage_bytes").values())
    assert run.finish() == [0, 0, 0], run.output()


# The queries of the dashboard's "Load generator" row (Grafana's $job and $__rate_interval), one per panel.
def load_generator_panels() -> dict[str, str]:
    """The dashboard's "Load generator" row: panel title -> query."""
    panels = json.loads((EXAMPLES / "grafana" / "locust-dashboard.json").read_text())["panels"]
    row = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Load generator")
    after = panels[row + 1 :]
    end = next((i for i, p in enumerate(after) if p["type"] == "row"), len(after))
    return {p["title"]: t["expr"] for p in after[:end] for t in p["targets"]}


def test_load_generator_queries_return_data_on_a_real_prometheus(run_locust, prometheus):
    [scraped] = scrape_runs(run_locust, prometheus, (HEALTH, dict(users=2, rate=2, run_time=6, workers=2)))
    at = final_scrape(scraped)
    assert scraped.run.finish() == [0, 0, 0], scraped.run.output()
    panels = load_generator_panels()
    assert len(panels) >= 4
    for title, expr in panels.items():
        query = expr.replace("$job", "locust").replace("$__rate_interval", "1m")
        result = scraped.prom.query(query, at)
        assert result and all(math.isfinite(float(r["value"][1])) for r in result), (title, query, result)
    workers = scraped.prom.query('count(locust_memory_usage_bytes{job="locust"})', at)
    assert float(workers[0]["value"][1]) == 3, "the master and its two workers"
