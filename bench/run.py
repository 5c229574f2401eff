"""Benchmark: this project against a prometheus_client reference (event cost, scrape cost, memory, report sizes).

    python bench/run.py [--quick] [--baseline PYTHON]

``--baseline`` names an interpreter with an earlier build installed: the master-merge and learning sections run
with it too and print both builds side by side (before/after).

Not a test: prints figures, ratios and PASS/MISS against the targets, and exits 0 whatever they are.
The end-to-end runs need nginx (Debian: ``apt-get install -y nginx``). All traffic stays on 127.0.0.1;
every run is bounded in time. The default run takes about 3 minutes, ``--quick`` under 1 (smoke test only).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

from scrape import fetch

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
# Locust and what it talks to never share a core: the end-to-end figures are Locust's own throughput.
LOCUST_CPU, TARGET_CPU = 0, 1
USERS = 20
SCRAPE_INTERVAL = 0.5
IDLE_SECONDS = 2.0
SIZES = (100, 1_000, 10_000)
REPORT_SIZES = (100, 1_000)
MASTER_WORKERS, MASTER_COMBOS = 100, 1_000
MEMORY_COMBOS = 10_000
#: Series one label combination makes: requests_total, the duration histogram and the two byte counters.
SERIES_PER_COMBO = 4
VARIANTS = {"none": "(a) no exporter", "project": "(b) this project", "reference": "(c) prometheus_client"}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def pinned(cpu: int) -> list[str]:
    """A taskset prefix, when there are cores to keep apart."""
    return ["taskset", "-c", str(cpu)] if (os.cpu_count() or 1) > 1 and shutil.which("taskset") else []


def worker(*args: str, cpu: int | None = None, python: str = sys.executable) -> Any:
    """Runs a workers.py command in a fresh process and returns its JSON answer."""
    cmd = [*(pinned(cpu) if cpu is not None else []), python, str(HERE / "workers.py"), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(map(str, header)), *[list(map(str, r)) for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in cells
    ]
    return "\n".join("  " + line.rstrip() for line in lines)


# 1. Cost per event -----------------------------------------------------------------------------------------


def event_cost(quick: bool) -> str:
    rounds, repeats = ("300", "3") if quick else ("3000", "7")
    us = {}
    for variant in VARIANTS:
        log(f"cost per event: {variant}")
        answer = worker("events", variant, "--rounds", rounds, "--repeats", repeats, cpu=LOCUST_CPU)
        us[variant] = answer["seconds_per_event"] * 1e6
    added = {v: us[v] - us["none"] for v in ("project", "reference")}
    ratio = added["reference"] / added["project"]
    cost = added["project"]
    rows = [[VARIANTS[v], f"{us[v]:.2f}", "" if v == "none" else f"{added[v]:.2f}"] for v in VARIANTS]
    log("cost per observation: classic and native buckets")
    observe = worker("observe", "--rounds", "30" if quick else "300", "--repeats", repeats, cpu=LOCUST_CPU)
    classic, native = observe["classic"] * 1e6, observe["native"] * 1e6
    return "\n".join(
        [
            "1. Cost per request event: locust.events.request.fire() with Locust's own stats listener,",
            "   10 names x 3 statuses (GET/POST, HttpUser-like responses); best of the repeats, on one core",
            table(["variant", "us/event", "added us/event"], rows),
            f"  ratio (c)/(b) of the added cost: {ratio:.1f}x",
            f"  of which native buckets (in (b), on the duration histogram): Histogram.observe() of spread values"
            f" {classic:.3f} us classic, {native:.3f} us with native=True: {native - classic:+.3f} us",
            f"  target: added cost <= 1 us per event     {verdict(cost <= 1.0)} ({cost:.2f} us)",
            f"  target: >= 10x below the reference       {verdict(ratio >= 10)} ({ratio:.1f}x)",
        ]
    )


# 2. End to end ---------------------------------------------------------------------------------------------


def nginx_binary() -> str:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"  # /usr/sbin is not on every user's PATH
    if not os.access(binary, os.X_OK):
        raise SystemExit("nginx is needed for the end-to-end runs: apt-get install -y nginx")
    return binary


@contextmanager
def nginx(workdir: Path) -> Iterator[str]:
    """A single-process nginx on a free loopback port, serving a small static body; stopped on exit."""
    port = free_port()
    (workdir / "www").mkdir()
    (workdir / "www" / "body.html").write_text("<!doctype html><title>bench</title><p>" + "x" * 200 + "</p>\n")
    temp_kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp_paths = "\n".join(f"    {kind}_temp_path {workdir}/{kind};" for kind in temp_kinds)
    conf = workdir / "nginx.conf"
    # No master: one process, as the current user (a root master would hand the temp dir to www-data).
    conf.write_text(f"""daemon off;
master_process off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp_paths}
    keepalive_requests 1000000;
    server {{
        listen {HOST}:{port};
        root {workdir}/www;
        location / {{ try_files /body.html =404; }}
    }}
}}
""")
    proc = subprocess.Popen([*pinned(TARGET_CPU), nginx_binary(), "-c", str(conf), "-e", str(workdir / "error.log")])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {(workdir / 'error.log').read_text()}") from None
                time.sleep(0.05)
        yield f"http://{HOST}:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Scraper(threading.Thread):
    """Scrapes /metrics every SCRAPE_INTERVAL, as Prometheus would, from the target's core."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seconds: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        if pinned(TARGET_CPU):
            os.sched_setaffinity(0, {TARGET_CPU})  # this thread only
        while not self.stop.wait(SCRAPE_INTERVAL):
            try:
                self.seconds.append(fetch(self.url, timeout=5))
            except OSError:
                pass  # not serving yet, or already gone


def locust_run(name: str, variant: str, scraped: bool, target: str, duration: int, workdir: Path) -> dict[str, Any]:
    port = free_port()
    cpu_file = workdir / f"{name}.cpu.json"
    env = dict(os.environ, BENCH_EXPORTER=variant, BENCH_METRICS_PORT=str(port), BENCH_CPU_FILE=str(cpu_file))
    # --reset-stats: figures from the steady state, once all users run.
    cmd = [
        *pinned(LOCUST_CPU),
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(HERE / "locustfile.py"),
        "--headless",
        "-u",
        str(USERS),
        "-r",
        str(USERS),
        "-t",
        f"{duration}s",
        "--reset-stats",
        "--host",
        target,
        "--csv",
        str(workdir / name),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
    ]
    scraper = Scraper(f"http://{HOST}:{port}/metrics")
    with open(workdir / f"{name}.log", "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=HERE)
        if scraped:
            scraper.start()
        try:
            code = proc.wait(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        finally:
            scraper.stop.set()
    if code != 0:
        raise RuntimeError(f"locust ({name}) exited with {code}:\n{(workdir / f'{name}.log').read_text()[-3000:]}")
    with open(workdir / f"{name}_stats.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    cpu = json.loads(cpu_file.read_text())
    return {
        "rps": float(row["Requests/s"]),
        "cpu_us": cpu["cpu"] / max(cpu["requests"], 1) * 1e6,
        "p50": int(row["50%"]),
        "p95": int(row["95%"]),
        "failures": int(row["Failure Count"]),
        "scrapes": scraper.seconds,
    }


def end_to_end(quick: bool, rounds: int = 3) -> str:
    rounds, seconds = (1, 4) if quick else (rounds, 7)
    variants = [("none", False), ("project", False), ("reference", False), ("project", True), ("reference", True)]
    # Interleaved rounds, medians: bursts of other work on the machine hit one round of a variant, not all of it.
    runs: dict[tuple[str, bool], list[dict[str, Any]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="lpe-bench-") as tmp, nginx(Path(tmp)) as target:
        for round_ in range(rounds):
            for variant, scraped in variants:
                log(f"end to end, round {round_ + 1}/{rounds}: {variant}{' scraped' if scraped else ''}")
                name = f"{round_}-{variant}{'-scraped' if scraped else ''}"
                runs[variant, scraped].append(locust_run(name, variant, scraped, target, seconds, Path(tmp)))

    def median(key: str, rs: list[dict[str, Any]]) -> Any:
        return statistics.median_low(r[key] for r in rs)

    base = median("rps", runs["none", False])
    base_cpu = median("cpu_us", runs["none", False])
    rows = []
    for (variant, scraped), rs in runs.items():
        rps = [r["rps"] for r in rs]
        scrapes = [s for r in rs for s in r["scrapes"]]
        rows.append(
            [
                VARIANTS[variant] + (", scraped" if scraped else ""),
                f"{median('rps', rs):.0f}",
                f"{(max(rps) - min(rps)) / median('rps', rs):.1%}",
                f"{median('rps', rs) / base:.1%}",
                f"{median('cpu_us', rs):.1f}",
                f"{base_cpu / median('cpu_us', rs):.1%}",
                median("p50", rs),
                median("p95", rs),
                sum(r["failures"] for r in rs),
                f"{len(scrapes)} / {statistics.median(scrapes) * 1e3:.1f}" if scrapes else "",
            ]
        )
    worst = min(median("rps", runs["project", scraped]) for scraped in (False, True)) / base
    # Locust is CPU-bound on its core here, so req/s it can reach goes as 1 / (CPU time per request).
    worst_cpu = min(base_cpu / median("cpu_us", runs["project", scraped]) for scraped in (False, True))
    return "\n".join(
        [
            f"2. End to end: locust FastHttpUser, {USERS} users, no wait, 10 names, nginx static body on 127.0.0.1;",
            f"   locust on CPU {LOCUST_CPU}, nginx and scraper on CPU {TARGET_CPU}; scraped every {SCRAPE_INTERVAL} s;"
            f" {rounds} interleaved round(s) of {seconds} s per variant (steady state), medians",
            table(
                [
                    "variant",
                    "req/s",
                    "spread",
                    "vs (a)",
                    "CPU us/req",
                    "req/CPU-s vs (a)",
                    "p50 ms",
                    "p95 ms",
                    "failures",
                    "scrapes / median ms",
                ],
                rows,
            ),
            "  (spread: (max - min) / median of req/s over the rounds: the machine's noise; CPU us/req: Locust's",
            "   own CPU time per request in the steady state, which a busy machine does not skew)",
            f"  target: req/s with this project >= 98% of (a)   {verdict(worst >= 0.98)} (worst {worst:.1%})",
            f"  same target by CPU per request                 {verdict(worst_cpu >= 0.98)} (worst {worst_cpu:.1%})",
        ]
    )


# 3. Scrape cost --------------------------------------------------------------------------------------------


def scrape_cost(quick: bool) -> str:
    scrapes = "2" if quick else "5"
    sizes = ",".join(map(str, SIZES))
    got = {}
    for variant in ("project", "reference"):
        log(f"scrape cost: {variant}")
        cpus = ["--cpus", f"{LOCUST_CPU},{TARGET_CPU}"] if pinned(TARGET_CPU) else []
        got[variant] = worker(
            "scrape", variant, "--sizes", sizes, "--scrapes", scrapes, "--idle", str(IDLE_SECONDS), *cpus
        )
    rows = []
    for size in map(str, SIZES):
        p, r = got["project"][size], got["reference"][size]
        rows.append(
            [
                f"{int(size):,}",
                f"{int(size) * SERIES_PER_COMBO:,}",
                f"{p['bytes'] / 1e6:.2f} / {r['bytes'] / 1e6:.2f}",
                f"{p['render'] * 1e3:.2f} / {r['render'] * 1e3:.1f}",
                f"{p['scrape'] * 1e3:.2f} / {r['scrape'] * 1e3:.1f}",
                f"{r['scrape'] / p['scrape']:.1f}x",
                f"{p['stall'] * 1e3:.2f} ({p['max_stall'] * 1e3:.2f}) / {r['stall'] * 1e3:.1f}",
            ]
        )
    idle = " / ".join(f"{got[v]['idle_stall'] * 1e3:.2f}" for v in ("project", "reference")) + " ms"
    p, r = got["project"][str(SIZES[-1])], got["reference"][str(SIZES[-1])]
    speedup = r["scrape"] / p["scrape"]
    return "\n".join(
        [
            "3. Scrape cost: project / reference, gevent-patched process as under Locust, text format, no gzip,",
            f"   medians of {scrapes} scrapes; loop stall = longest lateness of a greenlet ticking every 1 ms during"
            " a scrape (max in brackets)",
            f"   loop thread on CPU {LOCUST_CPU}, scraper and the project's server threads on CPU {TARGET_CPU};"
            f" longest lateness of the idle loop over {IDLE_SECONDS:.0f} s: {idle}",
            table(["combos", "series", "MB", "render ms", "HTTP scrape ms", "speed-up", "loop stall ms"], rows),
            f"  target: {SIZES[-1]:,}-combination scrape >= 20x faster   {verdict(speedup >= 20)} ({speedup:.1f}x)",
            f"  target: loop stall <= 1 ms during it           {verdict(p['stall'] <= 0.001)}"
            f" ({p['stall'] * 1e3:.2f} ms)",
        ]
    )


# 4. Memory and 5. worker reports ---------------------------------------------------------------------------


def memory() -> str:
    rows = []
    for variant in ("project", "reference"):
        log(f"memory: {variant}")
        delta = worker("memory", variant, "--combos", str(MEMORY_COMBOS))["rss_delta"]
        rows.append(
            [
                VARIANTS[variant],
                f"{delta / 2**20:.1f}",
                f"{delta / MEMORY_COMBOS * 1000 / 1024:.0f}",
                f"{delta / (MEMORY_COMBOS * SERIES_PER_COMBO) * 1000 / 1024:.0f}",
            ]
        )
    return "\n".join(
        [
            f"4. Memory: RSS delta after {MEMORY_COMBOS:,} new label combinations"
            f" ({MEMORY_COMBOS * SERIES_PER_COMBO:,} series, a histogram counted as one)",
            table(["variant", "MiB", "KiB per 1,000 combos", "KiB per 1,000 series"], rows),
        ]
    )


def reports() -> str:
    rows = []
    for size in REPORT_SIZES:
        log(f"worker report: {size} combinations")
        r = worker("report", "--combos", str(size))
        series = size * SERIES_PER_COMBO
        rows.append(
            [
                f"{size:,}",
                f"{series:,}",
                f"{r['first']:,}",
                f"{r['first'] / series:.0f}",
                f"{r['changed']:,}",
                f"{r['steady']:,}",
                f"{r['steady'] / (r['changed'] * SERIES_PER_COMBO):.0f}",
            ]
        )
    return "\n".join(
        [
            "5. Worker report: CollectorRegistry.take_report() bytes; first = every series,"
            " steady = after ~10% of combinations changed",
            table(["combos", "series", "first B", "B/series", "changed combos", "steady B", "B/changed series"], rows),
        ]
    )


# 6. Master merge -------------------------------------------------------------------------------------------


def master_merge(quick: bool, baseline: str | None) -> str:
    workers, combos = MASTER_WORKERS, MASTER_COMBOS
    args = ["master", "--workers", str(workers), "--combos", str(combos), "--scrapes", "3" if quick else "7"]
    builds = {"this build": sys.executable}
    if baseline:
        builds = {"baseline": baseline, **builds}
    # Builds alternate, and each figure is the best of the runs: other work on the machine hits one run, not all.
    runs: dict[str, list[dict[str, Any]]] = {build: [] for build in builds}
    for run in range(1 if quick else 3):
        for build, python in builds.items():
            log(f"master merge, run {run + 1}: {build}")
            runs[build].append(worker(*args, cpu=LOCUST_CPU, python=python))
    got = {build: {k: min(r[k] for r in rs) for k in rs[0]} for build, rs in runs.items()}
    measures = [
        ("render, 1 worker, ms", lambda g: f"{g['render_one'] * 1e3:.2f}"),
        (f"render, {workers} workers, ms", lambda g: f"{g['render_all'] * 1e3:.2f}"),
        (f"{workers} workers / 1 worker", lambda g: f"{g['render_all'] / g['render_one']:.2f}x"),
        (f"apply a first report ({combos * SERIES_PER_COMBO:,} series), ms", lambda g: f"{g['apply_first'] * 1e3:.3f}"),
        ("apply a steady report (~10% changed, 5 rounds), ms", lambda g: f"{g['apply_steady'] * 1e3:.3f}"),
        ("apply a periodic full report, ms", lambda g: f"{g['apply_full'] * 1e3:.3f}"),
    ]
    rows = [[name, *(show(got[b]) for b in builds)] for name, show in measures]
    now = got["this build"]
    ratio = now["render_all"] / now["render_one"]
    lines = [
        f"6. Master merge: {workers} workers each reporting the same {combos:,} combinations"
        f" ({combos * SERIES_PER_COMBO:,} series, {now['bytes'] / 1e6:.1f} MB scraped); in-process render and",
        "   apply_report(), medians, best of the runs; reports made by the project's own registry; one core",
        table(["measure", *builds], rows),
        f"  target: {workers}-worker render <= 3x the 1-worker one   {verdict(ratio <= 3)} ({ratio:.2f}x)",
    ]
    if baseline:
        base = got["baseline"]
        worst = max(now[k] / base[k] for k in ("apply_first", "apply_steady", "apply_full"))
        lines.append(
            f"  target: applying a report costs no more than the baseline   {verdict(worst <= 1)} (worst {worst:.2f}x)"
        )
    else:
        lines.append("  (--baseline PYTHON: the same figures from an earlier build, side by side)")
    return "\n".join(lines)


# 7. Learning families ----------------------------------------------------------------------------------------

LEARN_SIZES = (1_000, 10_000)


def learn(quick: bool, baseline: str | None) -> str:
    builds = {"this build": sys.executable}
    if baseline:
        builds = {"baseline": baseline, **builds}
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {b: {n: [] for n in LEARN_SIZES} for b in builds}
    for run in range(1 if quick else 3):
        for build, python in builds.items():
            for n in LEARN_SIZES:
                log(f"learning {n:,} families, run {run + 1}: {build}")
                runs[build][n].append(worker("learn", "--families", str(n), cpu=LOCUST_CPU, python=python))
    got = {b: {n: {k: min(r[k] for r in rs) for k in rs[0]} for n, rs in by_n.items()} for b, by_n in runs.items()}
    small, large = LEARN_SIZES
    rows = []
    for build in builds:
        g = got[build]
        ratio = g[large]["apply_first"] / g[small]["apply_first"]
        rows.append(
            [
                build,
                *(f"{g[n]['apply_first'] * 1e3:.1f} ({g[n]['first_bytes'] / 1e3:.0f} kB)" for n in LEARN_SIZES),
                f"{ratio:.1f}x",
                f"{g[large]['apply_steady'] * 1e3:.2f} ({g[large]['steady_bytes'] / 1e3:.0f} kB)",
            ]
        )
    now = got["this build"]
    ratio = now[large]["apply_first"] / now[small]["apply_first"]
    header = [
        "build",
        *(f"apply {n:,} new families, ms (report)" for n in LEARN_SIZES),
        f"{large:,} / {small:,}",
        f"steady report of the {large:,}, ms (report)",
    ]
    lines = [
        "7. Learning families: a worker's report of N families new to the master (one counter series each), then",
        "   its steady reports (~10% of the families changed, median of 5); in-process apply_report(), CPU time,",
        "   best of 5 fresh masters in each of the runs",
        table(header, rows),
        f"  target: {large:,} families cost at most 10x what {small:,} do   {verdict(ratio <= 10)} ({ratio:.1f}x)",
    ]
    if not baseline:
        lines.append("  (--baseline PYTHON: the same figures from an earlier build, side by side)")
    return "\n".join(lines)


SECTIONS = ("events", "end-to-end", "scrape", "memory", "reports", "master", "learn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, for smoke-testing the benchmark itself")
    parser.add_argument("--rounds", type=int, default=3, help="end-to-end rounds per variant (more: less noise)")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this section (repeatable)")
    parser.add_argument(
        "--baseline",
        metavar="PYTHON",
        help="interpreter with an earlier build installed: its master-merge and learning figures side by side",
    )
    args = parser.parse_args()
    quick = args.quick
    chosen = args.only or list(SECTIONS)
    if "end-to-end" in chosen:
        nginx_binary()  # before minutes of work, not after
    load = os.getloadavg()[0]  # shown: other work on the machine skews every figure
    started = time.monotonic()
    run = {
        "events": lambda: event_cost(quick),
        "end-to-end": lambda: end_to_end(quick, args.rounds),
        "scrape": lambda: scrape_cost(quick),
        "memory": memory,
        "reports": reports,
        "master": lambda: master_merge(quick, args.baseline),
        "learn": lambda: learn(quick, args.baseline),
    }
    sections = [run[name]() for name in SECTIONS if name in chosen]
    print(
        f"locust-prometheus-exporter {version('locust-prometheus-exporter')} vs prometheus_client"
        f" {version('prometheus_client')}; locust {version('locust')}, Python {platform.python_version()},"
        f" {os.cpu_count()} CPUs, load average {load:.2f} at start{', --quick (not representative)' if quick else ''}\n"
    )
    print("\n\n".join(sections))
    print(f"\n(run took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
