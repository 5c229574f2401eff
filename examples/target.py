"""A small local target for the demo and the tests: answers on 127.0.0.1 only.

Routes: ``/`` and ``/about/`` (200), ``/missing`` (404), ``/error`` (500), ``/slow`` (200 after 50 ms),
``/redirect`` (302 to ``/``), ``/sleep?ms=N`` (200 after N ms); ``POST /echo`` answers with the body it got.

    python examples/target.py [--port 8000]
"""

from __future__ import annotations

import argparse
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGES = {"/": b"<h1>home</h1>\n", "/about/": b"<h1>about</h1>\n" * 4, "/slow": b"slow\n"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/slow":
            time.sleep(0.05)
        if path == "/sleep":
            # Spread latencies on demand; a bad or missing `ms` sleeps not at all.
            query = dict(p.partition("=")[::2] for p in self.path.partition("?")[2].split("&"))
            try:
                time.sleep(min(max(float(query.get("ms", "0")), 0.0), 10_000.0) / 1000)
            except ValueError:
                pass
            self._send(200, b"slept\n")
        elif path in PAGES:
            self._send(200, PAGES[path])
        elif path == "/redirect":
            self._send(302, b"", {"Location": "/"})
        elif path == "/error":
            self._send(500, b"error\n")
        else:
            self._send(404, b"not found\n")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(200, body)

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that left mid-request (a load test stopping) is no error of the target's.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve(port: int = 8000) -> Server:
    """Binds 127.0.0.1:port (0 for any free port); call ``serve_forever()`` on the result."""
    return Server(("127.0.0.1", port), Handler)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    server = serve(parser.parse_args().port)
    print(f"target on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
