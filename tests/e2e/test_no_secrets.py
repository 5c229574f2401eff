"""No secret leaves the exporter: push URLs with userinfo, passwords and bearer tokens from the environment appear
in nothing it writes (Locust's log file, its output and stderr, /metrics, error messages), while the targets are
still named, with `***` for their userinfo."""

from __future__ import annotations

import base64

from support.paths import LOCUSTFILES
from support.scrape import free_port, http_get

BUSY = LOCUSTFILES / "busy.py"

#: (user, password) pairs, as URL userinfo or in the environment.
RW_URL = ("rw-user", "RwUrlS3cret")
PG_URL = ("pg-user", "PgUrlS3cret")
PG_ENV = ("pg-env", "PgEnvS3cret")
RW_TOKEN = "RwT0kenS3cret"


def forms(user: str, password: str) -> list[bytes]:
    """How a credential could show: the password, and the `Basic` header's base64 of the pair."""
    return [password.encode(), base64.b64encode(f"{user}:{password}".encode())]


SECRETS = [*forms(*RW_URL), *forms(*PG_URL), *forms(*PG_ENV), RW_TOKEN.encode()]


def with_userinfo(url: str, user: str, password: str) -> str:
    return url.replace("http://", f"http://{user}:{password}@", 1)


def test_no_secret_in_anything_the_exporter_writes(run_locust, pushgateway, recorder, tmp_path):
    # Remote write to a receiver that fails first (retried, then refused: two failures logged with the URL);
    # the Pushgateway, a real one, takes every push.
    receiver = recorder([500, 500, 400])
    rw = with_userinfo(f"{receiver.url}/api/v1/write", *RW_URL)
    pg = with_userinfo(pushgateway.url, *PG_URL)
    env = {
        "LOCUST_PROMETHEUS_REMOTE_WRITE_BEARER_TOKEN": RW_TOKEN,
        "LOCUST_PROMETHEUS_PUSHGATEWAY_USERNAME": PG_ENV[0],
        "LOCUST_PROMETHEUS_PUSHGATEWAY_PASSWORD": PG_ENV[1],
    }
    port, logfile = free_port(), tmp_path / "locust-logfile.log"
    extra = ("--headless", "-t", "4s", "-u", "2", "-r", "2", "--prometheus-port", str(port),
             "--prometheus-remote-write", rw, "--prometheus-pushgateway", pg, "--prometheus-push-interval", "1",
             "--logfile", str(logfile))  # fmt: skip
    run = run_locust(BUSY, autostart=False, extra=extra, env=env)
    run.metrics_port = port
    scraped: list[bytes] = []
    run.wait_until(lambda: scraped.append(http_get(f"http://127.0.0.1:{port}/metrics")[2]) or len(scraped) > 2, 30,
                   "three scrapes")  # fmt: skip
    assert run.finish(timeout=60) == [0], run.output()
    log = logfile.read_text()
    # The targets are named, without their userinfo, where the exporter logs them.
    assert f"remote write to http://***@127.0.0.1:{receiver.server_address[1]}/api/v1/write" in log, log
    assert "failed: HTTP 500" in log and "failed: HTTP 400" in log, log
    assert "Pushgateway to " + pushgateway.url.replace("http://", "http://***@") in log, log
    assert receiver.requests and pushgateway.metrics(), "nothing was pushed"
    # Everything the run wrote: Locust's log file, its output and stderr (the run's logs), its files; and /metrics.
    written = {path.name: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    written |= {f"/metrics #{i}": body for i, body in enumerate(scraped)}
    assert b"locust_requests_total" in written["/metrics #0"]
    leaks = [(name, secret) for name, data in written.items() for secret in SECRETS if secret in data]
    assert not leaks, leaks


def test_a_malformed_push_url_is_refused_without_its_userinfo(run_locust):
    """The one line that stops Locust names the URL as given, but for its userinfo."""
    url = "http://mal-user:MalS3cret@/api/v1/write"  # no host
    run = run_locust(BUSY, autostart=False, extra=("--headless", "-t", "3s", "--prometheus-remote-write", url))
    assert run.finish(timeout=60) == [1], run.output()
    out = run.output()
    assert 'invalid push URL "http://***@/api/v1/write"' in out, out
    assert "MalS3cret" not in out and "Traceback" not in out, out
