"""Fixtures of every test: a registry of its own, in-process exporters and servers on it; the hook that fails
a run with a skipped or an expected-to-fail test."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from locust_prometheus_exporter import CollectorRegistry, PrometheusExporter, _native
from support.web_config import Pki

_skipped: list[str] = []

# A shell that starts a command in the background without job control has it ignore SIGINT, and an ignored
# signal stays ignored in every program it then starts: Locust would never see the Ctrl-C a test sends it.
# A handler, unlike an ignored signal, is reset to the default in a started program.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # An xfail counts as a skip: it too leaves the suite green with its claim untested (and `xfail_strict`
    # in pyproject.toml fails the run when one passes).
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped (or xfailed) test fails the run: every test here can run on a machine set up by
    `make system-deps`, and a skip would leave the suite green with its claim untested."""
    if _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped:
        terminalreporter.write_line(
            f"FAILED: {len(_skipped)} skipped or xfailed, which this suite counts as failures", red=True
        )


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of the test's own: its metrics' names clash with no other test's, its values start at zero."""
    return CollectorRegistry()


@pytest.fixture
def port(registry: CollectorRegistry):
    """A plain-Python exporter of `registry` on loopback, on the port the system picks; yields the port."""
    with PrometheusExporter("127.0.0.1", 0, registry=registry) as e:
        assert e.address is not None
        yield e.address[1]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.make(tmp_path)


@pytest.fixture
def serve(tmp_path: Path, registry: CollectorRegistry) -> Iterator[Callable[[str], int]]:
    """``serve(yaml)``: a server of `registry` on 127.0.0.1 with that web config (written to tmp_path/web.yml);
    its port."""
    servers: list[_native.Server] = []

    def start(text: str) -> int:
        (tmp_path / "web.yml").write_text(text)
        server = _native.Server(registry, "127.0.0.1", 0, str(tmp_path / "web.yml"))
        servers.append(server)
        return server.port

    yield start
    for server in servers:
        server.close()
