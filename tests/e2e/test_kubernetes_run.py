"""The headless Jobs of examples/kubernetes/headless/, run here as they run in a cluster: the master's and the
workers' command, args and environment, exactly, with only what differs on one machine substituted
(tests/support/kubernetes.py): in-cluster addresses become 127.0.0.1 and the local target, the ports become
free loopback ports, the ConfigMap's mount path becomes the directory of its file. Then the test shortens
--run-time to a few seconds, runs 4 users instead of 20 (this machine's 2 cores are shared: with 20, starved
workers missed their heartbeats under load) and asks Locust for its final statistics (--json-file).
"""

from __future__ import annotations

import subprocess
import time

from support.kubernetes import (
    KUBERNETES,
    Local,
    container_port,
    env,
    find,
    locust_json_stats,
    only_container,
    option,
    resources,
    service_port,
)
from support.locust_run import SERVING, LocustRun, assert_exact
from support.scrape import Samples, free_port, total

HEADLESS = KUBERNETES / "headless"


def test_the_headless_jobs_serve_exact_counts_on_the_service_s_port(tmp_path, target):
    manifests = resources(HEADLESS)
    master = only_container(find(manifests, "Job", "locust-master"))
    worker_job = find(manifests, "Job", "locust-worker")
    worker = only_container(worker_job)
    service = find(manifests, "Service", "locust-master")
    [endpoint] = find(manifests, "PodMonitor", "locust")["spec"]["podMetricsEndpoints"]

    # The ports, found by the names the Service and the PodMonitor use; then moved to free loopback ports.
    metrics = container_port(master, service_port(service, "metrics")["targetPort"])
    assert container_port(master, endpoint["port"]) == metrics
    master_port = service_port(service, "master")
    assert container_port(master, master_port["targetPort"]) == master_port["port"]
    local_metrics, local_master = free_port(), free_port()
    assert env(master)["LOCUST_HOST"].startswith("http")  # the system under test: here, the local target
    local = Local(
        values={
            "0.0.0.0": "127.0.0.1",
            service["metadata"]["name"]: "127.0.0.1",
            env(master)["LOCUST_HOST"]: target,
            str(metrics): str(local_metrics),
            str(master_port["port"]): str(local_master),
        },
        mounts={master["volumeMounts"][0]["mountPath"]: KUBERNETES / "base"},
    )
    final = tmp_path / "final.json"
    shorter = {"--run-time": "6s", "--users": "4", "--spawn-rate": "4"}
    master_cmd, master_env = local.command(master, options=shorter, extra=("--json-file", "final"))
    worker_cmd, worker_env = local.command(worker)
    for cmd, environment in ((master_cmd, master_env), (worker_cmd, worker_env)):
        text = " ".join([*cmd, *environment.values()])
        for cluster_value in ("0.0.0.0", "locust-master", "target.example.com", "/mnt/locust"):
            assert cluster_value not in text, (cluster_value, cmd)

    run = LocustRun(local_metrics, tmp_path / "unused", target, distributed=True)
    commands = [(master_cmd, master_env)] + [(worker_cmd, worker_env)] * worker_job["spec"]["parallelism"]
    for i, (cmd, environment) in enumerate(commands):
        log = tmp_path / ("master.log" if i == 0 else f"worker{i}.log")
        run.logs.append(log)
        run.procs.append(
            subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=environment, cwd=tmp_path)
        )
    try:
        # Scrape as Prometheus would until the master quits: it waits for one scrape after the test
        # stopped (LOCUST_PROMETHEUS_LINGER), so the last scrape answered holds the final counts.
        scrapes: list[Samples] = []
        deadline = time.monotonic() + 90
        while run.procs[0].poll() is None and time.monotonic() < deadline:
            try:
                scrapes.append(run.scrape())
            except OSError:
                pass  # not serving yet
            time.sleep(0.5)
        assert run.finish(timeout=30) == [0, 0, 0], run.output()
    finally:
        run.kill()
    out = run.output()
    # It served where the environment said, not where the locustfile's PrometheusExporter("0.0.0.0", 9091) did.
    found = SERVING.search(out)
    assert found and int(found.group(1)) == local_metrics, out
    assert "Final scrape of /metrics answered" in out, out
    users = [total(s, "locust_users_running") for s in scrapes]
    assert max(users, default=0) > 0, f"no scrape during the test: users by scrape {users}\n{out}"
    assert_exact(scrapes[-1], locust_json_stats(final))
    assert total(scrapes[-1], "locust_workers", state="missing") == 0
    assert option(master_cmd, "--expect-workers") == str(len(commands) - 1)
    assert option(master_cmd, "--master-bind-host") == "127.0.0.1"  # nothing listened beyond loopback
