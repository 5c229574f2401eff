"""The web-config file in Locust and for a real Prometheus: only the master reads it, a bad file stops Locust
at init, and Prometheus scrapes over HTTPS with basic auth and over mutual TLS."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.locust_run import locust_cmd
from support.paths import EXAMPLES
from support.prometheus import PrometheusServer, scraped_since, wait_scraping
from support.scrape import total
from support.web_config import MTLS, TLS, USERS, bcrypt_hash, get, write_bad

EXAMPLE_PLAIN = EXAMPLES / "locustfile.py"


# --- mutual TLS


# --- basic auth


def test_workers_ignore_the_option(run_locust, tmp_path):
    """A worker given a file that does not exist runs its part of the test: only the master reads it."""
    missing = str(tmp_path / "nowhere.yml")
    run = run_locust(EXAMPLE_PLAIN, users=2, rate=2, run_time=3, workers=1,
                     worker_args=("--prometheus-web-config", missing))  # fmt: skip
    samples = run.wait_stopped()
    assert total(samples, "locust_users_total") == 2
    assert run.finish() == [0, 0], run.output()
    assert "web config" not in run.output()


# --- bad files


@pytest.mark.parametrize("case", ["missing-file", "bad-yaml", "unknown-key", "missing-cert", "cert-not-pem",
                                  "key-mismatch", "unknown-client-auth", "not-bcrypt",
                                  "huge-interval"])  # fmt: skip
def test_a_bad_file_stops_locust_at_init_with_one_line(pki, case, target):
    path, _, words = write_bad(pki, case)
    cmd = locust_cmd(EXAMPLE_PLAIN, "--headless", "-u", "1", "-t", "5s", "-H", target, "--prometheus-host", "127.0.0.1",
                     "--prometheus-port", "0", "--prometheus-web-config", str(path))  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=pki.dir)
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if "web config" in line]
    assert len(lines) == 1 and f"web config {path}: " in lines[0] and words in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("source", ["environment", "locust.conf"])
def test_the_option_is_read_from_the_environment_and_locust_conf(pki, source, target):
    path, _, _ = write_bad(pki, "not-bcrypt")
    cmd = locust_cmd(EXAMPLE_PLAIN, "--headless", "-u", "1", "-t", "5s", "-H", target, "--prometheus-host", "127.0.0.1",
                     "--prometheus-port", "0")  # fmt: skip
    env = dict(os.environ)
    if source == "environment":
        env["LOCUST_PROMETHEUS_WEB_CONFIG"] = str(path)
    else:
        (pki.dir / "locust.conf").write_text(f"prometheus-web-config = {path}\n")
        cmd += ["--config", str(pki.dir / "locust.conf")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=pki.dir, env=env)
    assert r.returncode == 1 and f"web config {path}: " in r.stderr, r.stderr


# --- a real Prometheus, over HTTPS with basic auth, and over mutual TLS


def https_prometheus(prom: PrometheusServer, **job: object) -> PrometheusServer:
    """The running Prometheus's job, made the README's HTTPS scrape job (SIGHUP reloads its file)."""
    config_file = Path(re.search(r"--config.file=(\S+)", " ".join(prom.proc.args)).group(1))
    config = json.loads(config_file.read_text())
    [scrape_job] = config["scrape_configs"]
    scrape_job.update(scheme="https", **job)
    config_file.write_text(json.dumps(config))
    prom.proc.send_signal(signal.SIGHUP)
    https = f"https://{prom.target}/metrics"
    prom.wait_until(lambda: [t["scrapeUrl"] for t in prom.targets()] == [https], 30, "the HTTPS scrape job")
    return prom


def test_prometheus_scrapes_over_mutual_tls(serve, prometheus, pki):
    port = serve(MTLS.format(auth="RequireAndVerifyClientCert"))
    tls_config = {"ca_file": "ca.pem", "cert_file": "client.crt", "key_file": "client.key"}
    prom = https_prometheus(prometheus(port), tls_config={k: str(pki.dir / v) for k, v in tls_config.items()})
    prom.wait_until(lambda: prom.query('up{job="locust"} == 1'), 30, "a successful scrape over mutual TLS")
    [target] = prom.targets()
    assert (target["health"], target["lastError"]) == ("up", ""), target
    # Without its certificate, the same Prometheus is refused.
    https_prometheus(prom, tls_config={"ca_file": str(pki.dir / "ca.pem")})
    prom.wait_until(lambda: prom.targets()[0]["lastError"], 30, "a refused scrape")
    prom.wait_until(lambda: prom.query('up{job="locust"} == 0'), 30, "the target down")


def test_prometheus_scrapes_a_locust_run_over_https_with_basic_auth(run_locust, prometheus, pki, tmp_path):
    (pki.dir / "web.yml").write_text(TLS + USERS.format(alice=bcrypt_hash("wonderland", 10), bob=bcrypt_hash("x")))
    (tmp_path / "password").write_text("wonderland\n")
    # Idle, on the port it bound, until Prometheus scrapes it; then the test, through the web UI.
    run = run_locust(EXAMPLE_PLAIN, autostart=False, extra=("--prometheus-web-config", str(pki.dir / "web.yml")))
    run.terminate = True
    port = run.metrics_port
    assert f"https://127.0.0.1:{port}/metrics" in run.output()
    prom = https_prometheus(prometheus(port), tls_config={"ca_file": str(pki.dir / "ca.pem")},
                            basic_auth={"username": "alice", "password_file": str(tmp_path / "password")})  # fmt: skip
    wait_scraping(prom)
    run.swarm(2, 2, run_time=10)
    get_ok = 'locust_requests_total{method="GET", status="200"}'
    prom.wait_until(lambda: prom.query(f"sum({get_ok})"), 60, "requests scraped over HTTPS")
    [target] = prom.targets()
    assert (target["health"], target["lastError"]) == ("up", ""), target
    assert prom.value('up{job="locust"}') == 1
    # The README's queries answer.
    rate = f"sum(rate({get_ok}[5m]))"
    prom.wait_until(lambda: any(float(r["value"][1]) > 0 for r in prom.query(rate)), 30, "a request rate")
    p95 = (
        'histogram_quantile(0.95, sum(rate(locust_request_duration_seconds_bucket{name="/about/"}[5m])) by (le, name))'
    )
    prom.wait_until(lambda: prom.query(p95), 30, "the p95 query to answer")
    # Without the password, the same endpoint refuses.
    assert get(port, pki.context())[0] == 401
    # Once the test stopped (all its requests counted: one process), what Prometheus scraped over HTTPS is Locust's.
    run.wait_until(lambda: run.web_state()["state"] == "stopped", 60, "the test to stop")
    at = scraped_since(prom, time.time())
    [aggregated] = [row for row in run.web_state()["stats"] if row["name"] == "Aggregated"]
    assert prom.value("sum(locust_requests_total)", at) == aggregated["num_requests"] > 0
    assert run.finish() == [0], run.output()
