"""A plain (not gevent-patched) /metrics scraper, in its own process so it never runs on the loop it measures.

Reads ``URL COUNT`` lines on stdin; for each, scrapes COUNT times and prints one JSON line:
``{"seconds": [...], "bytes": N}``. Like Prometheus' default, one text 0.0.4 scrape at a time.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request


def fetch(url: str, timeout: float = 60.0) -> tuple[float, int]:
    """Seconds from connecting to the last body byte, and body bytes (urllib asks for no compression)."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        size = len(response.read())
    return time.perf_counter() - start, size


def main() -> None:
    for line in sys.stdin:
        url, count = line.split()
        results = [fetch(url) for _ in range(int(count))]
        print(json.dumps({"seconds": [s for s, _ in results], "bytes": results[-1][1]}), flush=True)


if __name__ == "__main__":
    main()
