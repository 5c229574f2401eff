"""The Kubernetes example's manifests (examples/kubernetes/), read as the cluster would read them, and turned
into local command lines: a container's command, args and env, with only what must differ on one machine
substituted (addresses, ports, where the ConfigMap is mounted)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from support.paths import EXAMPLES

KUBERNETES = EXAMPLES / "kubernetes"
#: The schemas and chart values the manifests are checked against (sources in that directory's README).
SCHEMAS = Path(__file__).resolve().parents[1] / "unit" / "kubernetes"

Manifest = dict[str, Any]


def documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomize_files(directory: Path) -> list[Path]:
    """The manifest files a kustomization lists as resources, following directories (as kustomize does;
    generators and patches are read by the tests that need them)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    files: list[Path] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        files += kustomize_files(path) if path.is_dir() else [path]
    return files


def resources(directory: Path) -> list[Manifest]:
    return [doc for path in kustomize_files(directory) for doc in documents(path)]


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    [found] = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def pod_spec(workload: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def only_container(workload: Manifest) -> dict[str, Any]:
    [container] = pod_spec(workload)["containers"]
    return dict(container)


def container_port(container: dict[str, Any], name: str) -> int:
    """The port a container declares under `name` (as a PodMonitor's `port` or a Service's `targetPort`
    names it)."""
    [port] = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == name]
    return int(port)


def service_port(service: Manifest, name: str) -> dict[str, Any]:
    [port] = [p for p in service["spec"]["ports"] if p["name"] == name]
    return dict(port)


def env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment (values only: a valueFrom is not something a local run can read)."""
    return {e["name"]: e["value"] for e in container.get("env", [])}


def option(args: list[str], name: str) -> str:
    """The value of `--name value` or `--name=value` in args (the last one, as argparse takes it)."""
    values = [args[i + 1] for i, a in enumerate(args[:-1]) if a == name]
    values += [a.partition("=")[2] for a in args if a.startswith(name + "=")]
    assert values, f"{name} not in {args}"
    return values[-1]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector selects a pod with these labels."""
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


@dataclass
class Local:
    """What changes when a pod's container runs as a process here: each value (an address, a URL, a port)
    found whole in an argument or an environment variable is replaced, and paths under a volume's mount
    path point into the local directory that holds the ConfigMap's files. Nothing else is touched."""

    values: dict[str, str]
    mounts: dict[str, Path] = field(default_factory=dict)

    def value(self, text: str) -> str:
        for mount, local in self.mounts.items():
            if text.startswith(mount.rstrip("/") + "/"):
                return str(local / text[len(mount.rstrip("/")) + 1 :])
        if "=" in text and text.startswith("--"):  # --option=value
            name, _, value = text.partition("=")
            return f"{name}={self.value(value)}"
        return self.values.get(text, text)

    def command(
        self, container: dict[str, Any], *, options: dict[str, str] | None = None, extra: tuple[str, ...] = ()
    ) -> tuple[list[str], dict[str, str]]:
        """(argv, environment) of the container run here. `options` replaces the values of options the
        test must change (e.g. a shorter --run-time); `extra` is added at the end (e.g. --json-file)."""
        assert container["command"][0] == "locust", container["command"]
        # The image's locust, here: this interpreter's, which has the package under test installed.
        argv = [sys.executable, "-m", "locust", *container["command"][1:]]
        args = [self.value(a) for a in container.get("args", [])]
        for name, value in (options or {}).items():
            option(args, name)  # the option must be in the manifest: the test changes it, it does not add it
            args = [a for a in args if not a.startswith(name + "=")]
            args = [value if i and args[i - 1] == name else a for i, a in enumerate(args)]
        # Nothing of this machine's environment that Locust or the exporter would read as an option.
        environment = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
        environment |= {k: self.value(v) for k, v in env(container).items()}
        environment["PYTHONUNBUFFERED"] = "1"
        return [*argv, *args, *extra], environment


def locust_json_stats(path: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """Locust's final statistics from `--json-file` (written at quit): (method, name) -> (requests, failures)."""
    return {(e["method"], e["name"]): (e["num_requests"], e["num_failures"]) for e in json.loads(path.read_text())}


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return loaded
