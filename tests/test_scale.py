"""Scale: a master merging many workers' reports, the cap on request names, the load generator's health."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from prometheus_client.parser import text_string_to_metric_families


def run_script(body: str) -> dict:
    """Runs `body` in a fresh interpreter (its own registry, apart from this session's) and returns its JSON."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)], capture_output=True, text=True, timeout=120
    )
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
    from locust_prometheus_exporter import _native

    WORKERS, NAMES, ROUNDS = 100, 30, 3
    listener = _native.RequestListener()
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
            mine.append(_native.take_report())
        reports.append(mine)
    _native.after_fork_in_child()
    for r in range(ROUNDS):
        for w in range(WORKERS):
            _native.apply_report(f"worker-{w}", reports[w][r])
    # Killed workers: Locust marks them missing; what they reported stays counted.
    _native.set_live_workers([f"worker-{w}" for w in range(0, WORKERS, 2)])
    print(json.dumps({"expected": expected, "durations": durations, "text": _native.render().decode()}))
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
