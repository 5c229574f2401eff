"""Remote write out of the box: against Debian's Prometheus with and without native histograms, the default
(`--prometheus-remote-write-histograms auto`) keeps every count; refusals are not retried; and a run whose pushes
all failed makes Locust exit 1.

Counts are compared with Locust's final statistics from `--json-file`, written at quit.
"""

from __future__ import annotations

import json
import re
import uuid

from support.paths import LOCUSTFILES
from support.remote_write import has_native_histograms

BUSY = LOCUSTFILES / "busy.py"
FALLBACK = re.compile(r"remote write to (\S+) refused the native histograms .*--prometheus-remote-write-histograms")
NATIVE_OFF = "native histograms are disabled"


def run(run_locust, url: str, seconds: int, *, workers: int = 0, extra=()):
    """A `--headless -t` run of busy.py (4 users) pushing by remote write to `url`, its final stats in
    `run.final_json`."""
    final = f"final-{uuid.uuid4().hex[:8]}"
    args = ["--headless", "-t", f"{seconds}s", "-u", "4", "-r", "4", "--json-file", final,
            "--prometheus-remote-write", url, *extra]  # fmt: skip
    locust = run_locust(BUSY, autostart=False, workers=workers, extra=tuple(args))
    locust.final_json = locust.csv_prefix.parent / f"{final}.json"  # relative to the run's cwd
    return locust


def total_requests(locust) -> float:
    total = sum(float(e["num_requests"]) for e in json.loads(locust.final_json.read_text()))
    assert total > 0, "Locust recorded no requests"
    return total


def last(prom, promql: str) -> float:
    """The last stored value of a sum of counters, whether or not its series went stale since."""
    return prom.value(f"sum(last_over_time({promql}[10m]))")


def nothing_reached(out: str) -> list[tuple[str, int]]:
    """(target, batches lost) of each line saying that nothing of the run reached a push target."""
    found = re.findall(r"Pushes by (remote write to \S+): .*nothing of the run reached it, (\d+) batches lost", out)
    return [(target, int(lost)) for target, lost in found]


def test_the_default_falls_back_to_classic_on_a_stock_prometheus(run_locust, scraping_prometheus):
    """Debian's Prometheus without the native-histograms feature, no remote-write option, a master and 2 workers:
    the refused batch is resent classic-only, every later one goes classic-only, and Prometheus holds Locust's final
    counts, in the counter and in the duration histogram's `_count` alike."""
    prom = scraping_prometheus(None)
    locust = run(run_locust, f"{prom.url}/api/v1/write", 10, workers=2)
    assert locust.finish(timeout=90) == [0, 0, 0], locust.output()
    out = locust.output()
    total = total_requests(locust)
    assert last(prom, 'locust_requests_total{job="locust"}') == total
    assert last(prom, 'locust_request_duration_seconds_count{job="locust"}') == total
    assert [m.group(1) for m in FALLBACK.finditer(out)] == [f"{prom.url}/api/v1/write"], out
    assert NATIVE_OFF not in out.replace(FALLBACK.search(out).group(0), ""), out  # no other line about it
    assert not nothing_reached(out)


def test_native_histograms_arrive_where_the_feature_is_on(run_locust, scraping_prometheus):
    """The same Prometheus with `--enable-feature=native-histograms`: the native histogram of the durations counts
    every request, beside the classic buckets, and nothing falls back."""
    prom = scraping_prometheus(None, flags=("--enable-feature=native-histograms",))
    locust = run(run_locust, f"{prom.url}/api/v1/write", 8, workers=2)
    assert locust.finish(timeout=90) == [0, 0, 0], locust.output()
    total = total_requests(locust)
    # Pushed series get no staleness marker: the latest sample answers (Prometheus 2.42's last_over_time skips
    # native histograms).
    assert prom.value('histogram_count(sum(locust_request_duration_seconds{job="locust"}))') == total
    assert last(prom, 'locust_request_duration_seconds_count{job="locust"}') == total
    assert not FALLBACK.search(locust.output()), locust.output()


def test_a_refusal_of_native_histograms_is_never_resent_in_native_form(run_locust, recorder):
    """A receiver that answers every request 500 "native histograms are disabled": by default it gets one batch in
    native form, then classic-only ones, none retried; with `native` every batch is native and none is sent twice;
    the deprecated classic-only flag sends none. Nothing reached it each time: Locust exits 1, with one line naming
    it and the batches lost."""
    auto = ("--prometheus-remote-write-histograms", "auto")
    native = ("--prometheus-remote-write-histograms", "native")
    deprecated = ("--prometheus-remote-write-classic-only",)
    for option, natives in ((auto, 1), (native, None), (deprecated, 0)):
        receiver = recorder([], then=(500, NATIVE_OFF))
        url = f"{receiver.url}/api/v1/write"
        extra = ("--prometheus-push-interval", "1", "--prometheus-linger", "5", *option)
        locust = run(run_locust, url, 4, extra=extra)
        assert locust.finish(timeout=60) == [1], locust.output()
        out = locust.output()
        sent_native = [body for body in receiver.bodies if has_native_histograms(body)]
        assert len(sent_native) == len(set(sent_native)), "a batch was sent twice in native form"
        if natives is None:
            assert sent_native and len(sent_native) == len(receiver.bodies), out
        else:
            assert len(sent_native) == natives and len(receiver.bodies) > natives, out
        [(target, lost)] = nothing_reached(out)
        # Each batch once, but the first one of `auto`, resent classic-only.
        assert target == f"remote write to {url}" and lost == len(set(receiver.bodies)) - (option == auto), out
        assert "did not end within --prometheus-linger" not in out  # refusals are not retried
        assert len(FALLBACK.findall(out)) == (option == auto), out
        assert ("--prometheus-remote-write-classic-only is deprecated" in out) == (option == deprecated), out


def test_a_receiver_that_accepts_nothing_makes_locust_exit_1(run_locust, recorder):
    """503 to everything: retried until the next push is due, or until --prometheus-linger at quit; nothing
    reached it, so Locust exits 1 with one line naming it and the count of batches lost."""
    receiver = recorder([], then=(503, "overloaded"))
    url = f"{receiver.url}/api/v1/write"
    locust = run(run_locust, url, 4, extra=("--prometheus-push-interval", "1", "--prometheus-linger", "2"))
    assert locust.finish(timeout=60) == [1], locust.output()
    out = locust.output()
    [(target, lost)] = nothing_reached(out)
    assert target == f"remote write to {url}" and lost >= 3, out
    assert len(receiver.requests) > lost  # retried
    assert re.search(r"Shutting down \(exit code 1\)", out), out
