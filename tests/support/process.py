"""A server binary run for a test (Prometheus, the Pushgateway): started, polled until ready, stopped at the end,
its log shown when it fails."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pytest


def require(binary: str, package: str) -> None:
    """A missing binary fails the test: a skip would leave the suite green with its claim untested."""
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} is not installed: `make system-deps` (Debian: apt-get install {package})")


class ServerProcess:
    """One process listening on 127.0.0.1 at `url`, its output in `log`. Started with
    ``--web.listen-address=127.0.0.1:0``, a Prometheus server binary logs the port it bound: `url` is known once
    `wait_ready` returns."""

    #: What a poll may raise while the server starts: it counts as "not yet".
    not_yet: tuple[type[Exception], ...] = (OSError,)
    url: str = ""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.log = log
        self._log_file = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30) -> None:
        """Until it listens, on the port its log names, and /-/ready answers 200."""

        def listening() -> bool:
            found = re.search(r'msg="Listening on" address=(127\.0\.0\.1:\d+)', self.log.read_text(errors="replace"))
            if found:
                self.url = f"http://{found.group(1)}"
            return found is not None

        self.wait_until(listening, timeout, f"{self.name} to listen")

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return r.status == 200

        self.wait_until(ready, timeout, f"{self.name} to be ready")

    def wait_until(self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
        """Polls `predicate` until it returns something truthy, which is returned; fails after `timeout` s,
        or at once if the process exits."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}\n{self.output()}")
            try:
                result = predicate()
                if result:
                    return result
                last = result
            except self.not_yet as e:
                last = e
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{self.output()}")

    @property
    def name(self) -> str:
        return Path(self.proc.args[0]).name

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""


P = ParamSpec("P")
S = TypeVar("S", bound=ServerProcess)


@contextmanager
def started(make: Callable[P, S]) -> Iterator[Callable[P, S]]:
    """`make`, returning each server once it is ready; every server made is stopped on leaving."""
    servers: list[S] = []

    def start(*args: P.args, **kwargs: P.kwargs) -> S:
        server = make(*args, **kwargs)
        servers.append(server)
        server.wait_ready()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
