"""Demo: examples/locustfile_custom_metrics.py against the local target, with a scrape printed mid-run.

Starts examples/target.py on 127.0.0.1:8000 (the host that locustfile names), runs locust headless
for about 30 s with the exporter on 127.0.0.1:9091, prints /metrics while the test runs, and exits with
Locust's exit code.

    python examples/demo.py
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import target

HERE = Path(__file__).resolve().parent
METRICS = "http://127.0.0.1:9091/metrics"


def main() -> int:
    server = target.serve(8000)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("target on http://127.0.0.1:8000; exporter on", METRICS, flush=True)
    # The demo's own scrape is not a Prometheus: no final scrape to wait for at the end (--prometheus-linger 0).
    locust = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile_custom_metrics.py"), "--headless",
         "-u", "10", "-r", "2", "-t", "30s", "--prometheus-host", "127.0.0.1", "--prometheus-linger", "0",
         "--only-summary"]
    )  # fmt: skip
    try:
        time.sleep(20)
        with urllib.request.urlopen(METRICS, timeout=10) as r:
            text = r.read().decode()
        # Buckets make the page long; the rest shows every family.
        shown = [line for line in text.splitlines() if "_bucket{" not in line or 'le="+Inf"' in line]
        print(f"\n----- {METRICS} at t=20s (buckets other than +Inf omitted) -----")
        print("\n".join(shown), flush=True)
        print("-----\n", flush=True)
        return locust.wait(timeout=120)
    finally:
        if locust.poll() is None:
            locust.terminate()
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
