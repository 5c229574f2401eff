"""Real receivers for the end-of-run tests: Debian's `prometheus` (scraping at a chosen interval, and
receiving remote write) and `prometheus-pushgateway`, each on 127.0.0.1 at a free port."""

from __future__ import annotations

import http.server
import json
import shutil
import ssl
import subprocess
import threading
import urllib.request
from pathlib import Path

from support.process import ServerProcess
from support.prometheus import PrometheusServer
from support.scrape import samples_of


class ScrapingPrometheus(PrometheusServer):
    """Prometheus scraping 127.0.0.1:scrape_port as job "locust" every `interval` s (none with `scrape_port=None`),
    with the remote-write receiver on, and `flags` added to its command line."""

    def __init__(self, workdir: Path, scrape_port: int | None, interval: float, flags: tuple[str, ...] = ()) -> None:
        self.target = f"127.0.0.1:{scrape_port}"
        workdir.mkdir(parents=True, exist_ok=True)
        jobs = [{"job_name": "locust", "static_configs": [{"targets": [self.target]}]}] if scrape_port else []
        config = {"global": {"scrape_interval": f"{interval:g}s"}, "scrape_configs": jobs}
        (workdir / "prometheus.yml").write_text(json.dumps(config))
        cmd = [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            "--web.listen-address=127.0.0.1:0",  # the port it picks is in its log
            "--web.enable-remote-write-receiver",
            *flags,
        ]
        # Its own config and known port: PrometheusServer's process, not its constructor.
        ServerProcess.__init__(self, cmd, workdir / "prometheus.log")

    def scraped_once(self) -> bool:
        """Whether it tried a first scrape (it may have failed: the target may not listen yet)."""
        return any(not t["lastScrape"].startswith("0001-") for t in self.targets())

    def last_values(self, metric: str, by: str = "method, name") -> dict[tuple[str, ...], float]:
        """The last stored value of `sum by (...)` of a counter, whether or not the series went stale since."""
        keys = [k.strip() for k in by.split(",")]
        result = self.query(f"sum by ({by}) (last_over_time({metric}[10m]))")
        return {tuple(r["metric"].get(k, "") for k in keys): float(r["value"][1]) for r in result}


class Pushgateway(ServerProcess):
    """`prometheus-pushgateway` on 127.0.0.1 (its default, :9091, is the exporter's default port)."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("prometheus-pushgateway") or "prometheus-pushgateway"
        # Debian's default persistence file is shared by every Pushgateway of the machine.
        cmd = [
            binary,
            "--web.listen-address=127.0.0.1:0",  # the port it picks is in its log
            f"--persistence.file={workdir / 'pushgateway.data'}",
        ]
        super().__init__(cmd, workdir / "pushgateway.log")

    def metrics(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as r:
            return samples_of(r.read().decode())


def serve(server: http.server.HTTPServer, tls: tuple[Path, Path] | None) -> str:
    """Serves `server` (bound on 127.0.0.1) from a daemon thread, over TLS with `tls` (certificate, key); its URL."""
    scheme = "http"
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"{scheme}://127.0.0.1:{server.server_address[1]}"


#: A "status" for `Recorder`: no answer at all, until the client gives up and closes the connection.
STALL = None


class Recorder(http.server.ThreadingHTTPServer):
    """An HTTP(S) server on 127.0.0.1 that records each POST/PUT (method, path, headers by lowercase name, body size;
    the bodies in `bodies`) and answers with the next of `statuses` (or `STALL`s), then with `then` (status, body):
    a receiver whose answers the test chooses, on a real socket."""

    def __init__(
        self, statuses: list[int | None], tls: tuple[Path, Path] | None = None, then: tuple[int, str] = (204, "")
    ) -> None:
        self.requests: list[tuple[str, str, dict[str, str], int]] = []
        self.bodies: list[bytes] = []
        self.statuses = list(statuses)
        self.then = then
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        self.url = serve(self, tls)


class _RecorderHandler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.requests.append((self.command, self.path, headers, len(body)))
        self.server.bodies.append(body)
        status, text = (self.server.statuses.pop(0), "") if self.server.statuses else self.server.then
        if status is STALL:
            self.close_connection = True
            self.rfile.read()  # until the client closes its end
            return
        answer = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_POST = do_PUT = _record

    def log_message(self, *_args) -> None:
        pass


def make_ca_and_server_cert(workdir: Path) -> tuple[Path, Path, Path]:
    """With openssl: a CA, and a certificate for 127.0.0.1 it signed; returns (ca.pem, server.pem, server.key)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca, ca_key, cert, key, csr = (workdir / n for n in ("ca.pem", "ca.key", "server.pem", "server.key", "server.csr"))
    ext = workdir / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    for cmd in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=end-of-run test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
         "-extfile", ext],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True, timeout=30)
    return ca, cert, key
