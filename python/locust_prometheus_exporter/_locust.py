"""Locust event wiring. Each hook is thin: it hands Locust's data to the native core and returns.

Installed once per process, by the first :class:`PrometheusExporter`.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import secrets
import sys
import time
from typing import TYPE_CHECKING, Any

import gevent
import locust
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner
from locust.user.task import LOCUST_STATE_WAITING

from . import _end_of_run, _native

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.runners import Runner

    from ._exporter import PrometheusExporter

logger = logging.getLogger("locust_prometheus_exporter")

#: Key of this package's blob in Locust's worker-to-master report.
REPORT_KEY = "locust_prometheus_exporter"
#: How often runner-derived gauges are refreshed (seconds).
POLL_INTERVAL = 1.0
#: The ``name`` label value of requests past the cap on distinct names (``<>`` cannot appear in a URL path).
OVERFLOW_NAME = _native.OVERFLOW_NAME
#: ``worker`` label of the health gauges for the master's own process, and for a process running alone.
MASTER, LOCAL = "master", "local"
#: Worker states as Locust's runners name them.
WORKER_STATES = ("ready", "spawning", "running", "cleanup", "stopping", "stopped", "missing")

_wiring: _Wiring | None = None


def install(buckets: list[float] | None, per_worker: bool, max_names: int) -> _Wiring:
    """The process's wiring, created on first use; raises ``ValueError`` on conflicting settings.

    ``max_names`` is the first exporter's, as the address options are.
    """
    global _wiring
    check_max_names(max_names, "max_names")
    listener = _native.RequestListener(buckets, per_worker)
    if _wiring is None:
        listener.set_max_names(max_names)
        _wiring = _Wiring(listener)
    return _wiring


def check_max_names(value: object, what: str) -> int:
    """``value`` if it is a valid cap on request names; ``TypeError``/``ValueError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be 0 (no cap) or more, got {value}")
    return value


def max_names_option(text: str) -> int:
    """``--prometheus-max-names``: bad values are a usage error (one line, exit 2), as argparse makes them."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    try:
        return check_max_names(value, "--prometheus-max-names")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def has_exporter() -> bool:
    """Whether this process made a :class:`PrometheusExporter` already."""
    return _wiring is not None and bool(_wiring.exporters)


def add_options(parser: Any, **_kw: Any) -> None:
    """``init_command_line_parser`` hook: options that override the exporter's constructor arguments.

    Each is also read from ``LOCUST_PROMETHEUS_*`` and from ``prometheus-*`` keys of locust.conf.
    """
    options = (
        ("host", str, "Address the Prometheus exporter listens on (overrides the locustfile)"),
        ("port", int, "Port of the Prometheus exporter's /metrics (overrides the locustfile)"),
        ("buckets", str, "Comma-separated upper bounds in seconds of locust_request_duration_seconds"),
        ("labels", str, "Comma-separated name=value labels added to every sample, e.g. env=staging,lg=eu1"),
        ("max-names", max_names_option, f"Distinct request names kept, later ones as {OVERFLOW_NAME}; 0: no cap"),
        ("web-config", str, "Web-config file (TLS, basic auth) in the format of node_exporter's --web.config.file"),
    )
    for name, kind, text in options:
        parser.add_argument(
            f"--prometheus-{name}",
            env_var=f"LOCUST_PROMETHEUS_{name.upper().replace('-', '_')}",
            type=kind,
            default=None,
            include_in_web_ui=False,
            help=text,
        )


def parse_buckets(text: str) -> list[float]:
    """``"0.1,1,10"`` -> ``[0.1, 1.0, 10.0]``; ``ValueError`` names the bad part."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as e:
        raise ValueError(f"--prometheus-buckets: {e}") from None


def parse_labels(text: str) -> list[tuple[str, str]]:
    """``"env=staging,lg=eu1"`` -> ``[("env", "staging"), ("lg", "eu1")]``."""
    pairs = []
    for part in filter(str.strip, text.split(",")):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--prometheus-labels: expected name=value, got {part!r}")
        pairs.append((name.strip(), value.strip()))
    return pairs


class _Wiring:
    def __init__(self, listener: _native.RequestListener) -> None:
        self.exporters: list[PrometheusExporter] = []
        self.init_seen = False
        #: The current test's run_id (``locust_test_info``), on the master or only process.
        self.run_id: str | None = None
        self._runner: Runner | None = None
        self._logged: set[str] = set()
        self._listener = listener
        self._buckets: str | None = None
        self._max_names: int | None = None
        self._users_total = listener.users_total
        self._users_running = listener.users_running
        self._users_waiting = listener.users_waiting
        self._workers = listener.workers
        self._cpu_usage = listener.cpu_usage
        self._memory_usage = listener.memory_usage
        self._health_of: set[str] = set()
        events = locust.events
        # The native listener is called by Locust directly: no Python frame per request.
        events.request.add_listener(listener)
        events.init.add_listener(self._on_init)
        events.init_command_line_parser.add_listener(add_options)
        events.report_to_master.add_listener(self._on_report_to_master)
        events.worker_report.add_listener(self._on_worker_report)
        events.test_start.add_listener(self._on_test_start)
        events.test_stop.add_listener(self._on_test_stop)
        _end_of_run.install(events, self)  # the final scrape and pushes at quit
        # `--processes` forks after the import: children start from zero, without the parent's server.
        # Around any fork, the server's renders pause so that no registry lock is held by a thread
        # the child does not have. Windows has no fork (and no `os.register_at_fork`).
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(
                before=_native.before_fork,
                after_in_parent=_native.after_fork_in_parent,
                after_in_child=_native.after_fork_in_child,
            )

    def _log_once(self, what: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            logger.exception("locust-prometheus-exporter: %s failed (logged once)", what)

    def _on_init(self, environment: Environment, runner: Runner | None = None, **_kw: Any) -> None:
        """A configuration the exporter cannot serve stops Locust (exit code 1) with one line, not the
        traceback Locust prints for a failing handler: the test would run with nobody able to scrape it."""
        try:
            self._init(environment, runner)
        except (OSError, ValueError) as e:
            message = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            logger.error("locust-prometheus-exporter: %s", message)
            sys.exit(1)

    def _init(self, environment: Environment, runner: Runner | None) -> None:
        self.init_seen = True
        self._runner = runner
        if runner is not None and not isinstance(runner, MasterRunner):
            _count_spawned_users(runner, self._users_total, self._users_running)
        if runner is not None:
            gevent.spawn(self._poll)
        self._apply_recording_options(environment)
        if isinstance(runner, WorkerRunner):
            return
        options = environment.parsed_options
        labels = getattr(options, "prometheus_labels", None)
        if labels:
            _native.set_const_labels(parse_labels(labels))
        host = getattr(options, "prometheus_host", None)
        port = getattr(options, "prometheus_port", None)
        web_config = getattr(options, "prometheus_web_config", None)
        for i, exporter in enumerate(self.exporters):
            # The options address the first exporter; any other keeps the address it was given.
            if i == 0:
                exporter.serve(host, port, web_config)
            else:
                exporter.serve()
            logger.info("Prometheus metrics on %s", exporter.url)

    def _refresh(self) -> None:
        runner = self._runner
        if isinstance(runner, MasterRunner):
            clients = list(runner.clients.values())
            _native.set_live_workers([c.id for c in clients if c.state != STATE_MISSING])
            for state in WORKER_STATES:
                self._workers.labels(state).set(sum(1 for c in clients if c.state == state))
            health = {c.id: (c.cpu_usage, c.memory_usage) for c in clients}
            self._set_health({MASTER: (runner.current_cpu_usage, runner.current_memory_usage), **health})
        elif runner is not None:
            # Polled, not counted in each wait: a user's sleep costs Locust nothing extra.
            users = [g.args[0] for g in list(runner.user_greenlets) if g.args]
            self._users_running.set(runner.user_count)
            self._users_waiting.set(sum(1 for u in users if getattr(u, "_state", None) == LOCUST_STATE_WAITING))
            if not isinstance(runner, WorkerRunner):
                self._set_health({LOCAL: (runner.current_cpu_usage, runner.current_memory_usage)})

    def _set_health(self, health: dict[str, tuple[float, float]]) -> None:
        """Locust's own CPU and memory measures, one series per load-generating process once Locust
        measured it (every 10 s, the first after 10 s: a zero memory is "not yet"); a worker gone from
        the master's list loses its series."""
        health = {worker: usage for worker, usage in health.items() if usage[1] > 0}
        for worker, (cpu, memory) in health.items():
            self._cpu_usage.labels(worker).set(cpu)
            self._memory_usage.labels(worker).set(memory)
        for gone in self._health_of - health.keys():
            self._cpu_usage.remove(gone)
            self._memory_usage.remove(gone)
        self._health_of = set(health)

    def _poll(self) -> None:
        while True:
            try:
                self._refresh()
            except Exception:
                self._log_once("refreshing runner gauges")
            if "names capped" not in self._logged and self._listener.names_capped:
                self._logged.add("names capped")
                logger.warning(
                    "locust-prometheus-exporter: more distinct request names than the cap; new ones are recorded as"
                    " name=%r (raise --prometheus-max-names / LOCUST_PROMETHEUS_MAX_NAMES, 0 for no cap, or group"
                    " URLs with name=)",
                    OVERFLOW_NAME,
                )
            gevent.sleep(POLL_INTERVAL)

    def _apply_recording_options(self, environment: Environment) -> None:
        """``--prometheus-buckets`` and ``--prometheus-max-names``, on every process: workers' histograms
        merge with the master's bucket by bucket. A worker started without them gets the master's with the
        first test (Locust passes custom options along), before any request, so nothing recorded is dropped."""
        buckets = getattr(environment.parsed_options, "prometheus_buckets", None)
        if buckets and buckets != self._buckets:
            self._listener.set_buckets(parse_buckets(buckets))
            self._buckets = buckets
        max_names = getattr(environment.parsed_options, "prometheus_max_names", None)
        if max_names is not None and max_names != self._max_names:
            self._listener.set_max_names(max_names)
            self._max_names = max_names

    def _on_test_start(self, environment: Environment, **_kw: Any) -> None:
        """A worker takes the master's buckets; the master (or only process) makes a new run id,
        so runs can be told apart in Prometheus."""
        runner = environment.runner
        if isinstance(runner, WorkerRunner):
            try:
                self._apply_recording_options(environment)
            except Exception:
                self._log_once("applying the master's --prometheus-buckets and --prometheus-max-names")
            return
        if runner is None:
            return
        try:
            locustfile = getattr(environment.parsed_options, "locustfile", None) or ""
            names = ",".join(os.path.basename(p) for p in str(locustfile).split(","))
            run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
            info = self._listener.test_info
            info.clear()
            info.labels(run_id, names, environment.host or "", runner.target_user_count or 0).set(1)
            self.run_id = run_id
        except Exception:
            self._log_once("setting locust_test_info")

    def _on_test_stop(self, **_kw: Any) -> None:
        try:
            self._refresh()
        except Exception:
            self._log_once("refreshing runner gauges")

    def _on_report_to_master(self, data: dict[str, Any], **_kw: Any) -> None:
        try:
            self._refresh()
            data[REPORT_KEY] = _native.take_report()
        except Exception:
            self._log_once("building the worker report")

    def _on_worker_report(self, client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        blob = data.get(REPORT_KEY)
        if blob is None:
            return
        try:
            _native.apply_report(client_id, blob)
        except Exception:
            self._log_once(f"reading the report of worker {client_id}")


def _count_spawned_users(runner: Runner, users_total: _native.Counter, users_running: _native.Gauge) -> None:
    """Wraps ``runner.spawn_users``, through which every user of a local or worker runner is made."""
    original = runner.spawn_users

    @functools.wraps(original)
    def spawn_users(*args: Any, **kwargs: Any) -> Any:
        new_users = original(*args, **kwargs)
        users_total.inc(len(new_users))
        users_running.set(runner.user_count)
        return new_users

    runner.spawn_users = spawn_users  # type: ignore[method-assign]
