"""The end of a run: the final scrape before Locust quits, in headless runs as CI makes them."""

from __future__ import annotations

import re
import signal
import time

import pytest
from conftest import LOCUSTFILES, free_port, http_get
from push_servers import pushgateway, scraping_prometheus  # noqa: F401  (fixtures)

BUSY = LOCUSTFILES / "busy.py"
WAITING = "Waiting up to"
FINAL = "Final scrape of /metrics answered"


def headless(run_locust, seconds: int, *, port: int | None = None, workers: int = 0, extra=(), env=None):
    """A `--headless -t` run of busy.py (4 users), serving on `port` (a free one by default)."""
    args = ["--headless", "-t", f"{seconds}s", "-u", "4", "-r", "4", *extra]
    if port is not None:
        args += ["--prometheus-port", str(port)]  # the last --prometheus-port wins
    run = run_locust(BUSY, autostart=False, workers=workers, extra=tuple(args), env=env)
    if port is not None:
        run.metrics_port = port
    return run


def stored_requests(prom) -> dict[tuple[str, str], float]:
    return prom.last_values('locust_requests_total{job="locust"}')


def csv_requests(run) -> dict[tuple[str, str], float]:
    stats = run.csv_stats()
    assert stats, "Locust recorded no requests"
    return {k: float(requests) for k, (requests, _) in stats.items()}


@pytest.mark.parametrize("workers", [0, 2], ids=["local", "master-2-workers"])
def test_final_scrape_stores_the_exact_final_counts(run_locust, scraping_prometheus, workers):  # noqa: F811
    """Prometheus scraping every 5 s holds Locust's final counts, name by name, after a 12 s headless run."""
    port = free_port()
    prom = scraping_prometheus(port, interval=5)
    prom.wait_until(prom.scraped_once, 30, "the first scrape attempt")
    run = headless(run_locust, 12, port=port, workers=workers)
    assert run.finish(timeout=90) == [0] * (workers + 1), run.output()
    out = run.output()
    assert WAITING in out and FINAL in out, out
    assert stored_requests(prom) == csv_requests(run)


def test_no_scraper_no_wait(run_locust):
    run = headless(run_locust, 3)
    assert run.finish(timeout=60) == [0], run.output()
    assert WAITING not in run.output()


def test_linger_zero_does_not_wait(run_locust):
    run = headless(run_locust, 4, extra=("--prometheus-linger", "0"))
    run.wait_until(lambda: http_get(f"http://127.0.0.1:{run.metrics_port}/metrics")[0] == 200, 30, "a scrape")
    assert run.finish(timeout=60) == [0], run.output()
    assert WAITING not in run.output()


def test_linger_bounds_the_wait_and_a_second_ctrl_c_skips_it(run_locust):
    """Scraped during the run, then no scraper: the wait lasts --prometheus-linger and logs that it ran out;
    and with a long linger, Ctrl-C twice quits at once."""
    run = headless(run_locust, 3, extra=("--prometheus-linger", "2"))
    run.wait_until(lambda: http_get(f"http://127.0.0.1:{run.metrics_port}/metrics")[0] == 200, 30, "a scrape")
    assert run.finish(timeout=60) == [0], run.output()
    out = run.output()
    waited = re.search(r"No final scrape of /metrics within ([0-9.]+) s", out)
    assert WAITING in out and waited and 2.0 <= float(waited.group(1)) < 3.0, out

    run = headless(run_locust, 60, extra=("--prometheus-linger", "60"))
    run.wait_until(lambda: http_get(f"http://127.0.0.1:{run.metrics_port}/metrics")[0] == 200, 30, "a scrape")
    master = run.procs[0]
    master.send_signal(signal.SIGINT)
    run.wait_until(lambda: WAITING in run.output(), 30, "the wait to start")
    interrupted = time.monotonic()
    master.send_signal(signal.SIGINT)
    assert run.finish(timeout=30) == [0], run.output()
    assert time.monotonic() - interrupted < 10
    assert "Final scrape and pushes skipped (Ctrl-C)" in run.output()


def test_bad_linger_stops_locust_at_init(run_locust):
    run = headless(run_locust, 3, extra=("--prometheus-linger", "-1"))
    assert run.finish(timeout=60) == [1], run.output()
    out = run.output()
    assert "--prometheus-linger must be a number of seconds >= 0, got -1.0" in out
    assert "Traceback" not in out
