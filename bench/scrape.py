"""A plain (not gevent-patched) /metrics scraper, in its own process so it never runs on the loop it measures.

Reads one URL a line on stdin, scrapes it once and prints the seconds it took.
Like Prometheus' default, one text-format scrape at a time, uncompressed here.
"""

from __future__ import annotations

import socket
import sys
import time
from urllib.parse import urlsplit


def fetch(url: str, timeout: float = 60.0) -> float:
    """Seconds from connecting to the last byte of a 200 response; ``OSError`` for anything else.

    The body is read until the server closes and not decoded: urllib's chunked decoding alone would add
    ~20% to a 20 MB scrape, a client cost Prometheus' Go client does not have.
    """
    parts = urlsplit(url)
    request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
    buffer = bytearray(1 << 20)
    start = time.perf_counter()
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            n = sock.recv_into(buffer)
            if not n:
                break
            head += buffer[:n]
        if head.split(b" ", 2)[1:2] != [b"200"]:
            raise OSError(f"{url}: {head[:80]!r}")
        while sock.recv_into(buffer):
            pass
    return time.perf_counter() - start


def main() -> None:
    for url in sys.stdin:
        print(fetch(url.strip()), flush=True)


if __name__ == "__main__":
    main()
