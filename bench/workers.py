"""Measurements that run inside a fresh, gevent-patched process (Locust's setting); run.py starts one per variant.

``locust.events`` is process-global, so each variant gets a process of its own and their listeners never mix.
Each command prints one JSON line with its figures:

    python bench/workers.py events  {none,project,reference} --rounds R --repeats K
    python bench/workers.py scrape  {project,reference} --sizes 100,1000,10000 --scrapes K [--cpus 0,1] [--idle S]
    python bench/workers.py memory  {project,reference} --combos N
    python bench/workers.py report  --combos N
    python bench/workers.py observe --rounds R --repeats K
    python bench/workers.py master  --workers W --combos N --scrapes K --rounds R
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.subprocess
import locust  # first: it monkey-patches the process with gevent, as Locust does for every locustfile
from locust.env import Environment
from reference import ReferenceExporter
from requests.exceptions import HTTPError

HOST = "127.0.0.1"
SCRAPER = Path(__file__).with_name("scrape.py")
#: How often the loop monitor's greenlet asks to be woken (seconds).
TICK = 0.001


class Project:
    """This project, behind the same small interface as ReferenceExporter."""

    def __init__(self, host: str, port: int) -> None:
        # Imported here: the other variants' processes never load the project.
        from locust_prometheus_exporter import PrometheusExporter

        # No cap on request names: the reference has none, and the sizes measured go past the default.
        self.exporter = PrometheusExporter(host, port, max_names=0)
        self.render = self.exporter.registry.render

    def serve(self) -> None:
        self.exporter.serve()

    @property
    def url(self) -> str:
        address = self.exporter.address
        assert address is not None, "serve() first"
        return f"http://{address[0]}:{address[1]}/metrics"


def exporter(variant: str) -> Project | ReferenceExporter | None:
    """Subscribes the variant's listener to locust.events (port 0: any free one, bound only by serve())."""
    if variant == "project":
        return Project(HOST, 0)
    if variant == "reference":
        return ReferenceExporter(HOST, 0)
    return None


class Request:
    """What the listeners read of requests' PreparedRequest."""

    __slots__ = ("body",)

    def __init__(self, body: bytes | None) -> None:
        self.body = body


class Response:
    """What the listeners read of an HttpUser response."""

    __slots__ = ("request", "status_code")

    def __init__(self, status_code: int, body: bytes | None) -> None:
        self.status_code = status_code
        self.request = Request(body)


def event(i: int, status: int = 200) -> dict[str, Any]:
    """The kwargs HttpUser fires for request i: GET for even i, POST with a JSON body for odd i."""
    method = "POST" if i % 2 else "GET"
    body = b'{"id": %d, "qty": 1}' % i if method == "POST" else None
    name = f"/api/items/{i}"
    url = f"http://{HOST}:8080{name}"
    error = f"{status} {'Client' if status < 500 else 'Server'} Error: for url: {url}"
    return {
        "request_type": method,
        "name": name,
        "response_time": 3.0 + i % 7 + status / 1000,
        "response_length": 512 + i,
        "response": Response(status, body),
        "context": {},
        "exception": None if status < 400 else HTTPError(error),
        "start_time": time.time(),
        "url": url,
    }


def fire_all(events: list[dict[str, Any]]) -> None:
    fire = locust.events.request.fire
    for kw in events:
        fire(**kw)


def cmd_events(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per events.request.fire(), Locust's own stats listener included (a LocalRunner adds it)."""
    Environment(events=locust.events).create_local_runner()
    exporter(args.variant)
    events = [event(i, status) for i in range(10) for status in (200, 404, 500)]
    fire_all(events)  # series and caches are made once, before timing
    per_event = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.rounds):
            fire_all(events)
        per_event.append((time.perf_counter() - start) / (args.rounds * len(events)))
    # The minimum is the run least disturbed by the rest of the machine.
    return {"seconds_per_event": min(per_event)}


def cmd_observe(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per Histogram.observe() of spread values, with classic buckets only and with native ones too:
    the difference is what the native buckets add to each request event."""
    from locust_prometheus_exporter import Histogram

    rng = random.Random(1)
    values = [rng.lognormvariate(math.log(0.1), 1.0) for _ in range(1000)]
    result = {}
    for native in (False, True):
        observe = Histogram(f"bench_observe_{int(native)}", "bench", native=native).observe
        best = math.inf
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(args.rounds):
                for v in values:
                    observe(v)
            best = min(best, (time.perf_counter() - start) / (args.rounds * len(values)))
        result["native" if native else "classic"] = best
    return result


class LoopMonitor:
    """A greenlet asking to wake every TICK; records the longest gap between wake-ups while armed."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self._last = time.perf_counter()
        gevent.spawn(self._tick)

    def _tick(self) -> None:
        while True:
            gevent.sleep(TICK)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - self._last)
            self._last = now

    def arm(self) -> None:
        gevent.sleep(0.05)  # let the monitor run again after whatever blocked the loop before
        self.max_gap, self._last = 0.0, time.perf_counter()

    def stall(self) -> float:
        """Longest time the loop was late, beyond the tick it asked for."""
        return max(0.0, self.max_gap - TICK)


def cmd_scrape(args: argparse.Namespace) -> dict[str, Any]:
    """Per size: in-process render and HTTP scrape times, and the longest loop stall during each scrape.

    With ``--cpus LOOP,SERVER`` the gevent loop's thread gets a core of its own and the scraper and the
    project's server threads share the other, so a stall measures blocking (GIL, same thread), not a lack of cores.
    """
    if args.cpus:
        os.sched_setaffinity(0, {args.cpus[1]})  # inherited by the scraper process and the server's threads
    # Started while the process is small: forking it later would itself stall the loop.
    scraper = gevent.subprocess.Popen(
        [sys.executable, str(SCRAPER)], stdin=gevent.subprocess.PIPE, stdout=gevent.subprocess.PIPE, text=True
    )
    exp = exporter(args.variant)
    exp.serve()
    if args.cpus:
        os.sched_setaffinity(0, {args.cpus[0]})  # this thread only (Linux): the loop's
    monitor = LoopMonitor()
    monitor.arm()
    gevent.sleep(args.idle)  # the machine's own lateness, to read the stalls against
    results: dict[str, Any] = {"idle_stall": monitor.stall()}
    made = 0
    for size in args.sizes:
        fire_all([event(i) for i in range(made, size)])
        made = size
        renders = []
        for _ in range(args.scrapes):
            start = time.perf_counter()
            body = exp.render()
            renders.append(time.perf_counter() - start)
        scrapes, stalls = [], []
        for _ in range(args.scrapes):
            monitor.arm()
            scraper.stdin.write(exp.url + "\n")
            scraper.stdin.flush()
            scrapes.append(float(scraper.stdout.readline()))  # cooperative: the loop keeps ticking meanwhile
            stalls.append(monitor.stall())
        results[str(size)] = {
            "render": statistics.median(renders),
            "scrape": statistics.median(scrapes),
            "bytes": len(body),
            "stall": statistics.median(stalls),
            "max_stall": max(stalls),
        }
    scraper.stdin.close()
    scraper.wait()
    return results


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cmd_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Resident bytes added by N new label combinations (events made beforehand: both keep them alive)."""
    exporter(args.variant)
    fire_all([event(-1)])  # first series: one-off allocations (registry, caches) are not counted
    events = [event(i) for i in range(args.combos)]
    gc.collect()
    before = rss()
    fire_all(events)
    gc.collect()
    return {"rss_delta": rss() - before}


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    """Worker report sizes: the first (every series) and a steady one with ~10% of combinations changed."""
    from locust_prometheus_exporter import REGISTRY

    exporter("project")
    events = [event(i) for i in range(args.combos)]
    fire_all(events)
    first = len(REGISTRY.take_report())
    fire_all(events[::10])
    return {"first": first, "steady": len(REGISTRY.take_report()), "changed": len(events[::10])}


def timed(f: Any, *args: Any) -> float:
    start = time.perf_counter()
    f(*args)
    return time.perf_counter() - start


def cpu_timed(f: Any, *args: Any) -> float:
    """The CPU time of ``f(*args)`` in this thread: on a busy machine, wall time counts other processes' turns."""
    start = time.thread_time()
    f(*args)
    return time.thread_time() - start


def cmd_master(args: argparse.Namespace) -> dict[str, Any]:
    """A master's costs with W workers each reporting the same N combinations: render with 1 worker and
    with W, and the time to apply a worker's first report, its steady ones (~10% changed, R rounds) and a
    periodic full one (every series, the changed ones at their new values).

    The reports are real: made in this process by the project's own registry, which starts from zero for each
    worker (as a forked child does); then it starts from zero again and serves as the master.
    """
    from locust_prometheus_exporter import CollectorRegistry, _native

    registry = CollectorRegistry()
    # Within the default cap on request names (1,000).
    listener = _native.RequestListener(registry)
    events = [event(i) for i in range(args.combos)]
    first, steady, full = [], [], []
    for w in range(args.workers):
        changed = [events[(w + r) % 10 :: 10] for r in range(args.rounds)]
        _native.after_fork_in_child()
        for kw in events:
            listener(**kw)
        first.append(registry.take_report())
        mine = []
        for batch in changed:
            for kw in batch:
                listener(**kw)
            mine.append(registry.take_report())
        steady.append(mine)
        _native.after_fork_in_child()
        for kw in events + [kw for batch in changed for kw in batch]:
            listener(**kw)
        full.append(registry.take_report())
    _native.after_fork_in_child()
    ids = [f"worker-{w}" for w in range(args.workers)]

    def render() -> float:
        return statistics.median(timed(registry.render) for _ in range(args.scrapes))

    def apply(reports: list[bytes], workers: range) -> list[float]:
        return [timed(registry.apply_report, ids[w], reports[w]) for w in workers]

    apply_first = apply(first, range(1))
    render_one = render()
    apply_first += apply(first, range(1, args.workers))
    apply_steady = [t for r in range(args.rounds) for t in apply([s[r] for s in steady], range(args.workers))]
    apply_full = apply(full, range(args.workers))
    return {
        "render_one": render_one,
        "render_all": render(),
        "bytes": len(registry.render()),
        "apply_first": statistics.median(apply_first),
        "apply_steady": statistics.median(apply_steady),
        "apply_full": statistics.median(apply_full),
        "first_bytes": statistics.median(map(len, first)),
        "steady_bytes": statistics.median(len(r) for s in steady for r in s),
    }


def cmd_learn(args: argparse.Namespace) -> dict[str, Any]:
    """A master learning families from a report: a worker's first report of N families new to the master
    (one counter series each, custom metrics as a locustfile defines them), then its steady reports (~10% of
    the families changed, R rounds), applied in order to a master that starts from nothing. CPU time, the best
    of `repeats` fresh masters: apply_report() runs in the calling thread."""
    from locust_prometheus_exporter import CollectorRegistry, Counter

    worker = CollectorRegistry()
    counters = [Counter(f"learned_{i}", "a family new to the master", registry=worker) for i in range(args.families)]
    for c in counters:
        c.inc()
    first = worker.take_report()
    steady = []
    for r in range(args.rounds):
        for c in counters[r % 10 :: 10]:
            c.inc()
        steady.append(worker.take_report())
    apply_first, apply_steady = [], []
    for _ in range(args.repeats):
        master = CollectorRegistry()
        apply_first.append(cpu_timed(master.apply_report, "worker-0", first))
        apply_steady.append(statistics.median(cpu_timed(master.apply_report, "worker-0", report) for report in steady))
    return {
        "apply_first": min(apply_first),
        "apply_steady": min(apply_steady),
        "first_bytes": len(first),
        "steady_bytes": statistics.median(map(len, steady)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("events")
    p.add_argument("variant", choices=("none", "project", "reference"))
    p.add_argument("--rounds", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=7)
    p = sub.add_parser("scrape")
    p.add_argument("variant", choices=("project", "reference"))
    p.add_argument("--sizes", type=lambda s: [int(n) for n in s.split(",")], default=[100, 1000, 10000])
    p.add_argument("--scrapes", type=int, default=5)
    p.add_argument("--cpus", type=lambda s: [int(n) for n in s.split(",")], help="LOOP,SERVER cores")
    p.add_argument("--idle", type=float, default=2.0, help="seconds the idle loop is watched first")
    p = sub.add_parser("memory")
    p.add_argument("variant", choices=("project", "reference"))
    p.add_argument("--combos", type=int, default=10000)
    p = sub.add_parser("report")
    p.add_argument("--combos", type=int, default=1000)
    p = sub.add_parser("master")
    p.add_argument("--workers", type=int, default=100)
    p.add_argument("--combos", type=int, default=1000)
    p.add_argument("--scrapes", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5, help="steady reports per worker")
    p = sub.add_parser("learn")
    p.add_argument("--families", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=5, help="steady reports")
    p.add_argument("--repeats", type=int, default=5, help="fresh masters, the best one counted")
    p = sub.add_parser("observe")
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    command = {
        "events": cmd_events,
        "scrape": cmd_scrape,
        "memory": cmd_memory,
        "report": cmd_report,
        "master": cmd_master,
        "learn": cmd_learn,
        "observe": cmd_observe,
    }
    print(json.dumps(command[args.command](args)), flush=True)


if __name__ == "__main__":
    main()
