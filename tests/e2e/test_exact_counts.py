"""Real locust processes against the local target: scraped values equal Locust's own statistics."""

from __future__ import annotations

import math

import pytest
from support.locust_run import assert_durations_exact, assert_exact
from support.paths import EXAMPLES, LOCUSTFILES
from support.scrape import http_get, samples_of, total

EXAMPLE_PLAIN = EXAMPLES / "locustfile.py"
EXAMPLE_CUSTOM = EXAMPLES / "locustfile_custom_metrics.py"

#: The README's default buckets of locust_request_duration_seconds, +Inf aside.
DEFAULT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60]

# Body sizes served by examples/target.py, by request name suffix.
RESPONSE_BYTES = {"/": 14, "/about/": 60, "/missing": 10, "/error": 6, "/echo": 123, "refused": 0, "caught": 60}


@pytest.mark.parametrize("locustfile", [EXAMPLE_PLAIN, EXAMPLE_CUSTOM], ids=["plain", "custom-metrics"])
def test_example_locustfiles_run_unchanged_and_exact(run_locust, locustfile):
    run = run_locust(locustfile, users=6, rate=6, run_time=8)
    run.wait_until(lambda: total(run.scrape(), "locust_users_running") == 6, 30, "6 running users")
    # between(1, 5): most of the time most users sleep.
    run.wait_until(lambda: total(run.scrape(), "locust_users_waiting") >= 3, 10, "users sleeping in wait_time")
    mid = run.scrape()
    final = run.wait_stopped()
    openmetrics = run.scrape(openmetrics=True)
    assert run.finish() == [0], run.output()
    stats = run.final_stats()
    assert_exact(final, stats)
    assert_exact(openmetrics, stats)
    assert_durations_exact(final, run.final_seconds())
    # The default buckets, as the README lists them.
    bounds = {float(dict(labels)["le"]) for name, labels in final if name == "locust_request_duration_seconds_bucket"}
    assert sorted(bounds) == [*DEFAULT_BUCKETS, math.inf]
    assert total(final, "locust_users_total") == 6
    assert total(final, "locust_users_running") == 0
    assert total(final, "locust_users_waiting") == 0
    if locustfile == EXAMPLE_CUSTOM:
        # The index task increments the counter once per GET /.
        assert total(final, "my_custom_counter_total") == stats[("GET", "/")][0]
        assert total(mid, "my_custom_gauge") == 6


def test_every_outcome_is_labelled_and_counted_exactly(run_locust):
    # Failures are the point here: they must not turn into a non-zero exit code.
    run = run_locust(LOCUSTFILES / "mixed.py", users=4, rate=4, run_time=6, extra=("--exit-code-on-error", "0"))
    samples = run.wait_stopped()
    # `name[]` selects a histogram by any of its sample names: the whole family, and nothing else.
    histogram = {k: v for k, v in samples.items() if k[0].startswith("locust_request_duration_seconds_")}
    for sample_name in ("locust_request_duration_seconds_bucket", "locust_request_duration_seconds_count"):
        status, _, body = http_get(f"http://127.0.0.1:{run.metrics_port}/metrics?name[]={sample_name}")
        assert status == 200 and samples_of(body.decode()) == histogram, sample_name
    assert run.finish() == [0], run.output()
    stats = run.final_stats()
    assert_exact(samples, stats)
    assert_durations_exact(samples, run.final_seconds())

    def requests(**labels: str) -> float:
        return total(samples, "locust_requests_total", **labels)

    def only_outcome(name: str, status: str, exception: str) -> None:
        """Every request of `name` has that status and exception; a failure each when there is an exception."""
        sent, failed = stats[("GET", name)]
        assert sent > 0 and failed == (sent if exception else 0), (name, stats[("GET", name)])
        assert requests(name=name, status=status, exception=exception) == sent, name

    for prefix, bad_status in (("http", "HTTPError"), ("fast", "LocustBadStatusCode")):
        only_outcome(f"{prefix}/", "200", "")
        only_outcome(f"{prefix}/about/", "200", "")
        only_outcome(f"{prefix}/missing", "404", bad_status)
        only_outcome(f"{prefix}/error", "500", bad_status)
        only_outcome(f"{prefix}refused", "0", "ConnectionRefusedError")
        only_outcome(f"{prefix}caught", "200", "CatchResponseError")
        for suffix, size in RESPONSE_BYTES.items():
            (method, name) = ("POST" if suffix == "/echo" else "GET", f"{prefix}{suffix}")
            count = stats[(method, name)][0]
            assert total(samples, "locust_response_length_bytes_total", method=method, name=name) == size * count
        posts = stats[("POST", f"{prefix}/echo")][0]
        assert total(samples, "locust_request_length_bytes_total", method="POST", name=f"{prefix}/echo") == 123 * posts
    # A timeout: no HTTP answer, status 0.
    only_outcome("httptimeout", "0", "ReadTimeout")
    assert requests(method="CUSTOM", name="manual", status="", exception="") == stats[("CUSTOM", "manual")][0]
    manual = stats[("CUSTOM", "manual")][0]
    assert total(samples, "locust_request_duration_seconds_sum", name="manual") == pytest.approx(0.0015 * manual)
