"""Locust's events recorded into a registry. Each hook is thin: it hands Locust's data to the native core.

One recorder per registry and process, made by the first exporter of that registry.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import TYPE_CHECKING, Any

import locust
from locust.runners import WorkerRunner

from . import _native, _options
from ._events import Subscriptions
from ._log import Once, logger
from ._runner_gauges import RunnerGauges

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.runners import Runner

#: Key of this package's blob in Locust's worker-to-master report (with a suffix for the registries made
#: after the first: master and workers run the same locustfile, so they make them in the same order).
REPORT_KEY = "locust_prometheus_exporter"

#: By the registry's id: the recorder holds its registry, so the id is not reused while it is here.
_recorders: dict[int, Recorder] = {}
#: Recorders made in this process: the report key of each is unique even after others were released.
_made = 0
_fork_hooks_installed = False


def recorder_for(
    registry: _native.CollectorRegistry, buckets: list[float] | None, per_worker: bool, max_names: int
) -> Recorder:
    """The recorder of ``registry``, made on first use, retained for the caller (see :meth:`Recorder.release`).
    ``ValueError`` for settings other than those the recorder was made with: Locust's metrics are recorded once
    per registry."""
    global _made
    _options.check_max_names(max_names, "max_names")
    # The bounds as the native side takes them (checked, the default filled in, a trailing +Inf dropped).
    bounds = _native.bucket_bounds(buckets)
    settings = {"buckets": bounds, "per_worker_metrics": per_worker, "max_names": max_names}
    recorder = _recorders.get(id(registry))
    if recorder is None:
        listener = _native.RequestListener(registry, bounds, per_worker)
        listener.set_max_names(max_names)
        key = f"{REPORT_KEY}.{_made}" if _made else REPORT_KEY
        recorder = _recorders[id(registry)] = Recorder(registry, listener, key, settings)
        _made += 1
    else:
        for name, first in recorder.settings.items():
            if settings[name] != first:
                given = repr(first)
                what = "buckets differ from those" if name == "buckets" else f"{name} differs from that"
                raise ValueError(
                    f"{what} of this registry's first exporter ({given}): give the same, or a registry of its own"
                )
    recorder.users += 1
    return recorder


def _install_fork_hooks() -> None:
    """``--processes`` forks after the import: children start from zero, without the parent's server. Around
    any fork, renders pause so that no registry lock is held by a thread the child does not have. Windows has
    no fork (and no ``os.register_at_fork``)."""
    global _fork_hooks_installed
    if not _fork_hooks_installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_native.before_fork,
            after_in_parent=_native.after_fork_in_parent,
            after_in_child=_native.after_fork_in_child,
        )
    _fork_hooks_installed = True


class Recorder:
    """Subscribes a registry to Locust's events: requests, users, reports between workers and master."""

    def __init__(
        self, registry: _native.CollectorRegistry, listener: _native.RequestListener, key: str, settings: dict[str, Any]
    ) -> None:
        self.registry = registry
        #: The arguments it was made with, by the exporter's argument name: the same for every exporter of it.
        self.settings = settings
        #: The current test's run_id (``locust_test_info``), on the master or only process.
        self.run_id: str | None = None
        self._listener = listener
        self._report_key = key
        self._gauges = RunnerGauges(registry, listener)
        self._logged = Once()
        self._buckets: str | None = None
        self._max_names: int | None = None
        #: The exporters using this recorder.
        self.users = 0
        events = locust.events
        self._subscriptions = Subscriptions(
            # The native listener is called by Locust directly: no Python frame per request.
            (events.request, listener),
            (events.init, self._on_init),
            (events.report_to_master, self._on_report_to_master),
            (events.worker_report, self._on_worker_report),
            (events.test_start, self._on_test_start),
            (events.test_stop, self._on_test_stop),
        )
        _install_fork_hooks()

    def release(self) -> None:
        """For an exporter closed: once no exporter uses it, the recorder leaves Locust's events."""
        self.users -= 1
        if self.users == 0:
            self._subscriptions.cancel()
            self._gauges.stop()
            del _recorders[id(self.registry)]

    def _on_init(self, environment: Environment, runner: Runner | None = None, **_kw: Any) -> None:
        try:
            self._apply_recording_options(environment)
            labels = _options.option(environment, "labels")
            if labels and not isinstance(runner, WorkerRunner):
                self.registry.set_const_labels(_options.pairs(labels, "--prometheus-labels"))
        except ValueError as e:
            _options.fail(str(e))
        if runner is not None:
            self._gauges.start(runner)

    def _apply_recording_options(self, environment: Environment) -> None:
        """``--prometheus-buckets`` and ``--prometheus-max-names``, on every process: workers' histograms
        merge with the master's bucket by bucket. A worker started without them gets the master's with the
        first test (Locust passes custom options along), before any request, so nothing recorded is dropped."""
        buckets = _options.option(environment, "buckets")
        if buckets and buckets != self._buckets:
            self._listener.set_buckets(_options.numbers(buckets))
            self._buckets = buckets
        max_names = _options.option(environment, "max-names")
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
                self._logged.exception("applying the master's --prometheus-buckets and --prometheus-max-names")
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
            self._logged.exception("setting locust_test_info")

    def _on_test_stop(self, **_kw: Any) -> None:
        try:
            self._gauges.refresh()
        except Exception:
            self._logged.exception("refreshing runner gauges")

    def _on_report_to_master(self, data: dict[str, Any], **_kw: Any) -> None:
        try:
            self._gauges.refresh()
            data[self._report_key] = self.registry.take_report()
        except Exception:
            self._logged.exception("building the worker report")

    def _on_worker_report(self, client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        blob = data.get(self._report_key)
        if blob is None:
            return
        try:
            for line in self.registry.apply_report(client_id, blob):
                logger.warning(line)
        except Exception:  # a blob that is not bytes: the report of something other than this package
            self._logged.exception(f"reading the report of worker {client_id}")
