"""The end of a run, in headless runs as CI makes them: the final scrape before Locust quits, and the
pushes (Prometheus remote write, Pushgateway) against the real receivers.

Counts are compared with Locust's final statistics from `--json-file`, written at quit. (Locust's `--csv`
stats file is rewritten every second while the process lives, so a run that quits at once can leave it
up to a second behind.)
"""

from __future__ import annotations

import base64
import re
import signal
import socket
import time

import pytest
from support.paths import LOCUSTFILES
from support.prometheus import native_buckets, native_quantile
from support.receivers import STALL, make_ca_and_server_cert
from support.scrape import free_port, http_get

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


def final_requests(run) -> dict[tuple[str, str], float]:
    """Locust's final request counts by (method, name), from `--json-file`."""
    stats = {key: float(requests) for key, (requests, _) in run.final_stats().items()}
    assert stats, "Locust recorded no requests"
    return stats


@pytest.mark.parametrize("workers", [0, 2], ids=["local", "master-2-workers"])
def test_final_scrape_stores_the_exact_final_counts(run_locust, scraping_prometheus, workers):
    """Prometheus scraping every 5 s holds Locust's final counts, name by name, after a 12 s headless run."""
    port = free_port()
    prom = scraping_prometheus(port, interval=5)
    prom.wait_until(prom.scraped_once, 30, "the first scrape attempt")
    run = headless(run_locust, 12, port=port, workers=workers)
    assert run.finish(timeout=90) == [0] * (workers + 1), run.output()
    out = run.output()
    assert WAITING in out and FINAL in out, out
    # The default linger: twice the scrape interval seen during the run.
    waited = re.search(rf"{WAITING} ([0-9.]+) s", out)
    assert waited and 9 <= float(waited.group(1)) <= 11, out
    assert stored_requests(prom) == final_requests(run)


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
    assert time.monotonic() - interrupted < 30, "the 60 s wait was not skipped"
    assert "Final scrape and pushes skipped (Ctrl-C)" in run.output()


def test_bad_linger_stops_locust_at_init(run_locust):
    run = headless(run_locust, 3, extra=("--prometheus-linger", "-1"))
    assert run.finish(timeout=60) == [1], run.output()
    out = run.output()
    assert "--prometheus-linger must be a number of seconds >= 0, got -1.0" in out
    assert "Traceback" not in out


def pushed_requests(samples) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for (name, labels), value in samples.items():
        if name == "locust_requests_total":
            d = dict(labels)
            out[(d["method"], d["name"])] = out.get((d["method"], d["name"]), 0.0) + value
    return out


def push_summary(out: str, what: str) -> tuple[int, int, int]:
    """(sent, failed, samples dropped) of the summary line logged at quit for pushes by `what`."""
    found = re.findall(rf"Pushes by {what} to \S+: (\d+) sent, (\d+) failed, (\d+) samples dropped", out)
    assert len(found) == 1, out
    return tuple(map(int, found[0]))  # type: ignore[return-value]


@pytest.mark.parametrize("workers", [0, 2], ids=["local", "master-2-workers"])
def test_pushes_hold_the_exact_final_counts(run_locust, scraping_prometheus, pushgateway, workers):
    """No scraper: remote write to a real Prometheus and a real Pushgateway get Locust's final counts, name by
    name, after a 12 s headless run. The distributed run also groups the Pushgateway's metrics by run_id.
    (Remote write sends native histograms by default: this Prometheus takes them.)"""
    prom = scraping_prometheus(None, flags=("--enable-feature=native-histograms",))
    extra = ["--prometheus-remote-write", f"{prom.url}/api/v1/write", "--prometheus-pushgateway", pushgateway.url,
             "--prometheus-push-interval", "1"]  # fmt: skip
    if workers:
        extra.append("--prometheus-pushgateway-run-id")
    run = headless(run_locust, 6, workers=workers, extra=extra)
    assert run.finish(timeout=90) == [0] * (workers + 1), run.output()
    final = final_requests(run)
    assert stored_requests(prom) == final
    gateway = pushgateway.metrics()
    assert pushed_requests(gateway) == final, [(k, v) for k, v in gateway.items() if k[0] == "locust_requests_total"]
    out = run.output()
    for what in ("remote write", "Pushgateway"):
        sent, failed, dropped = push_summary(out, what)
        assert sent >= 2 and (failed, dropped) == (0, 0), out  # one every second, and the final one
    assert WAITING not in out  # nothing scraped it
    [series] = prom.query('count by (job, instance) (locust_requests_total{name="/"})')
    assert series["metric"] == {"job": "locust", "instance": f"{socket.gethostname()}:{run.metrics_port}"}
    run_ids = {dict(labels).get("run_id") for name, labels in gateway if name == "locust_requests_total"}
    [(_, info)] = [k for k in gateway if k[0] == "locust_test_info"]
    assert run_ids == ({dict(info)["run_id"]} if workers else {None})


def test_remote_write_sends_the_native_histograms(run_locust, scraping_prometheus):
    """Prometheus with native histograms stores the pushed native histogram of the request durations: its
    count is Locust's final request count, and its quantiles answer. Without the feature, the same Prometheus
    takes the pushes of `--prometheus-remote-write-histograms classic`, and refuses every one of `native` (Locust
    exits 1: nothing reached it). The default, `auto`, is in test_remote_write.py."""
    prom = scraping_prometheus(None, flags=("--enable-feature=native-histograms",))
    args = ["--prometheus-remote-write", f"{prom.url}/api/v1/write", "--prometheus-push-interval", "1"]
    run = headless(run_locust, 4, extra=args)
    assert run.finish(timeout=90) == [0], run.output()
    sent, failed, dropped = push_summary(run.output(), "remote write")
    assert sent >= 2 and (failed, dropped) == (0, 0), run.output()
    final = final_requests(run)
    assert final.keys() == {("GET", "/"), ("GET", "/about/")}
    at = time.time()
    total = sum(final.values())
    durations = 'sum(locust_request_duration_seconds{job="locust"})'
    assert prom.value(f"histogram_count({durations})", at) == total
    assert prom.value('sum(locust_request_duration_seconds_count{job="locust"})', at) == total  # classic too
    # The median Prometheus answers is the one of the buckets it stored.
    median = prom.value(f"histogram_quantile(0.5, {durations})", at)
    assert median == pytest.approx(native_quantile(0.5, native_buckets(prom, durations, at)), rel=1e-12)
    # One native series per (method, name), and no other family sent as native.
    by_name = prom.query('histogram_count(sum by (method, name) (locust_request_duration_seconds{job="locust"}))', at)
    assert {(r["metric"]["method"], r["metric"]["name"]): float(r["value"][1]) for r in by_name} == final
    assert prom.query("busy_response_bytes_count")
    assert not prom.query("busy_response_bytes")  # a classic-only histogram has no native series

    plain = scraping_prometheus(None)
    for mode, refused in (("native", True), ("classic", False)):
        args = ["--prometheus-remote-write", f"{plain.url}/api/v1/write", "--prometheus-linger", "3",
                "--prometheus-remote-write-histograms", mode]  # fmt: skip
        run = headless(run_locust, 3, extra=args)
        assert run.finish(timeout=60) == [int(refused)], run.output()
        sent = push_summary(run.output(), "remote write")[0]
        assert (sent == 0) == refused, run.output()
    assert stored_requests(plain) == final_requests(run)


def test_unreachable_and_refused_pushes_never_stop_the_test(run_locust, scraping_prometheus):
    """A closed port (retried, then dropped) and a 404 (dropped at once): one log line per kind, a summary; the test
    runs to its end, and Locust exits 1 since nothing reached either target."""
    prom = scraping_prometheus(None)
    closed = 1  # nothing listens on port 1 of the loopback
    extra = ("--prometheus-push-interval", "1", "--prometheus-linger", "2",
             "--prometheus-pushgateway", f"http://127.0.0.1:{closed}",
             "--prometheus-remote-write", f"{prom.url}/api/v1/nowhere")  # fmt: skip
    run = headless(run_locust, 4, extra=extra)
    assert run.finish(timeout=60) == [1], run.output()
    out = run.output()
    assert len(re.findall(rf"Pushgateway to http://127.0.0.1:{closed} failed: ", out)) == 1, out
    assert len(re.findall(r"remote write to \S+/nowhere failed: HTTP 404", out)) == 1, out
    assert "final push by Pushgateway" in out and "did not end within --prometheus-linger" in out
    for what in ("remote write", "Pushgateway"):
        sent, failed, dropped = push_summary(out, what)
        assert sent == 0 and failed >= 3 and dropped > 0, out
    assert final_requests(run)  # the test ran to its end


@pytest.mark.parametrize("url", ["127.0.0.1:9090/api/v1/write", "ftp://127.0.0.1/x", "http:// /x"])
def test_malformed_push_url_stops_locust_at_init(run_locust, url):
    run = headless(run_locust, 3, extra=("--prometheus-remote-write", url))
    assert run.finish(timeout=60) == [1], run.output()
    out = run.output()
    assert f"--prometheus-remote-write: invalid push URL {url!r}".replace("'", '"') in out, out
    assert "Traceback" not in out


def test_remote_write_headers_bearer_token_and_retries(run_locust, recorder):
    """On a real socket: the remote-write protocol headers, the token and a tenant header from the environment,
    and a 503 and a 429 retried."""
    receiver = recorder([503, 429])
    env = {"LOCUST_PROMETHEUS_REMOTE_WRITE_BEARER_TOKEN": "s3cret-token",
           "LOCUST_PROMETHEUS_REMOTE_WRITE_HEADERS": "X-Scope-OrgID=tenant-1"}  # fmt: skip
    extra = ("--prometheus-remote-write", f"{receiver.url}/api/v1/write", "--prometheus-push-interval", "2")
    run = headless(run_locust, 5, extra=extra, env=env)
    assert run.finish(timeout=60) == [0], run.output()
    out = run.output()
    assert push_summary(out, "remote write")[1:] == (2, 0), out  # two failures, retried, nothing dropped
    assert len(re.findall(r"failed: HTTP 503", out)) == 1 and len(re.findall(r"failed: HTTP 429", out)) == 1, out
    assert len(receiver.requests) >= 4  # 2 refused, then the retry and at least the final push
    for method, path, headers, size in receiver.requests:
        assert (method, path, size > 0) == ("POST", "/api/v1/write", True)
        assert headers["content-encoding"] == "snappy"
        assert headers["content-type"] == "application/x-protobuf"
        assert headers["x-prometheus-remote-write-version"] == "0.1.0"
        assert headers["authorization"] == "Bearer s3cret-token"
        assert headers["x-scope-orgid"] == "tenant-1"
    assert "s3cret-token" not in out


def test_a_push_that_times_out_is_retried(run_locust, recorder):
    """A receiver that never answers the final push (the only one of a run shorter than the interval): after the
    request timeout (10 s) the same batch is sent again, and taken; nothing is dropped. (A regular push is retried
    until the next one is due, which carries fresher values.)"""
    receiver = recorder([STALL])
    extra = ("--prometheus-remote-write", f"{receiver.url}/api/v1/write", "--prometheus-push-interval", "60")
    run = headless(run_locust, 3, extra=extra)
    assert run.finish(timeout=60) == [0], run.output()
    out = run.output()
    assert push_summary(out, "remote write")[1:] == (1, 0), out  # one timeout, retried, nothing dropped
    assert len(re.findall(r"remote write to \S+ failed: .*time", out, re.IGNORECASE)) == 1, out
    stalled, retried = receiver.bodies
    assert retried == stalled, "the retry sends the batch that timed out"


#: Per kind of push: its option, its environment variables' prefix, its summary's name, and its requests.
PUSHES = {
    "remote-write": ("--prometheus-remote-write", "REMOTE_WRITE", "remote write", ("POST", "/api/v1/write")),
    "pushgateway": ("--prometheus-pushgateway", "PUSHGATEWAY", "Pushgateway", ("PUT", "/metrics/job/locust")),
}


@pytest.mark.parametrize("kind", PUSHES)
def test_pushes_over_tls_with_a_custom_ca_and_basic_auth(run_locust, recorder, tmp_path, kind):
    option, prefix, what, request = PUSHES[kind]
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    receiver = recorder([], tls=(cert, key))
    url = receiver.url + ("/api/v1/write" if kind == "remote-write" else "")
    env = {f"LOCUST_PROMETHEUS_{prefix}_USERNAME": "locust", f"LOCUST_PROMETHEUS_{prefix}_PASSWORD": "pa:ss",
           f"LOCUST_PROMETHEUS_{prefix}_CA_FILE": str(ca)}  # fmt: skip
    run = headless(run_locust, 3, extra=(option, url), env=env)
    assert run.finish(timeout=60) == [0], run.output()
    assert push_summary(run.output(), what)[1:] == (0, 0), run.output()
    basic = "Basic " + base64.b64encode(b"locust:pa:ss").decode()
    assert receiver.requests and all(
        (m, p, h["authorization"]) == (*request, basic) for m, p, h, _ in receiver.requests
    )

    # Without the CA, the certificate is not trusted: every push fails, the test runs to its end, Locust exits 1.
    run = headless(run_locust, 2, extra=(option, url, "--prometheus-linger", "1"))
    assert run.finish(timeout=60) == [1], run.output()
    assert push_summary(run.output(), what)[0] == 0


@pytest.mark.parametrize("kind", PUSHES)
def test_an_unreadable_ca_file_stops_locust_at_init(run_locust, tmp_path, kind):
    option, prefix, _, _ = PUSHES[kind]
    missing = tmp_path / "nowhere.pem"
    run = headless(
        run_locust,
        3,
        extra=(option, "https://127.0.0.1:9/x"),
        env={f"LOCUST_PROMETHEUS_{prefix}_CA_FILE": str(missing)},
    )
    assert run.finish(timeout=60) == [1], run.output()
    out = run.output()
    errors = [line for line in out.splitlines() if "ERROR/locust_prometheus_exporter" in line]
    assert len(errors) == 1 and str(missing) in errors[0], out
    assert "Traceback" not in out


@pytest.mark.parametrize("headers", ["X-Scope-OrgID", "bad name=x"])
def test_malformed_push_header_stops_locust_at_init(run_locust, headers):
    env = {"LOCUST_PROMETHEUS_REMOTE_WRITE_HEADERS": headers}
    run = headless(run_locust, 3, extra=("--prometheus-remote-write", "http://127.0.0.1:9/api/v1/write"), env=env)
    assert run.finish(timeout=60) == [1], run.output()
    out = run.output()
    assert re.search(
        r"ERROR/locust_prometheus_exporter: locust-prometheus-exporter: --prometheus-remote-write: .*header",
        out,
        re.IGNORECASE,
    ), out
    assert "Traceback" not in out
