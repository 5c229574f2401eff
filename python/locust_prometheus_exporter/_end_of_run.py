"""The end of a run: nothing recorded is lost when Locust quits.

The serving process (the master, or the only process) waits, when Locust quits, for one scrape of
``/metrics`` that started after the test stopped (the final scrape), and pushes to Prometheus remote
write, to a Pushgateway and to an OTLP endpoint when asked to: every push interval from a native thread, and once
more at quit.
"""

from __future__ import annotations

import os
import socket
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from locust.runners import MasterRunner

from . import _native, _options, _otel_env
from ._events import Subscriptions
from ._log import logger

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.event import Events
    from locust.runners import Runner

    from ._recording import Recorder

#: The native waits run in slices of this many seconds, so that a second Ctrl-C is seen promptly.
WAIT_SLICE = 0.25
#: How often the pushing threads' log lines are taken into Python's log (seconds).
LOG_INTERVAL = 1.0
#: (option, protocol) of the push targets.
PUSHES = (("remote_write", "remote_write"), ("pushgateway", "pushgateway"), ("otlp", "otlp"))

#: When each runner began to quit (``time.monotonic()``, ``scrape_mark()``): every exporter's waits count from
#: then, so that with several exporters they overlap instead of adding up.
_quit_began: weakref.WeakKeyDictionary[Runner, tuple[float, int]] = weakref.WeakKeyDictionary()


def _credentials(option: str) -> dict[str, Any]:
    """``username``, ``password``, ``bearer_token``, ``ca_file`` and ``headers`` given in
    ``LOCUST_PROMETHEUS_<OPTION>_*`` (``_HEADERS``: ``Name=value,Name2=value2``); ``ValueError`` for bad headers."""
    prefix = f"LOCUST_PROMETHEUS_{option.upper()}_"
    names = ("username", "password", "bearer_token", "ca_file")
    given: dict[str, Any] = {
        name: os.environ[prefix + name.upper()] for name in names if os.environ.get(prefix + name.upper())
    }
    try:
        headers = _options.pairs(os.environ.get(prefix + "HEADERS", ""), prefix + "HEADERS")
    except ValueError:
        # Without the part that `pairs` quotes: a header's value may be a token.
        raise ValueError(f"{prefix}HEADERS: expected Name=value, comma-separated") from None
    if headers:
        given["headers"] = headers
    return given


def _otlp(
    environment: Environment, url: str, instance: str, settings: dict[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    """The protocol, URL and settings of the OTLP push: the OTEL_* variables' headers, CA file and resource, with
    the ``LOCUST_PROMETHEUS_OTLP_*`` credentials (headers added, the CA file instead)."""
    histograms = _options.option(environment, "otlp-histograms") or "auto"
    protocol = "otlp" if histograms == "auto" else f"otlp_{histograms}"
    otel = _otel_env.push_settings(instance)
    headers = otel.pop("headers", []) + settings.pop("headers", [])
    return protocol, url.rstrip("/") + "/v1/metrics", {**otel, **settings, "headers": headers}


class EndOfRun:
    """The end of the run of one exporter: the final scrape of its server, and the pushes of its registry."""

    def __init__(self, events: Events, recorder: Recorder) -> None:
        """Call it at import, before Locust makes its runner: Locust fires ``quitting`` in reverse order, so the
        listener added here runs after the master's, which tells workers to quit and takes their last reports."""
        self._recorder = recorder
        self._server: _native.Server | None = None
        self._runner: Runner | None = None
        self._linger: float | None = None
        self._push_interval = 0.0
        self._group_by_run = False
        self._pushers: list[_native.Pusher] = []
        #: When the last test stopped, on a local runner (``scrape_mark()``), while no other test runs.
        self._stopped: int | None = None
        self._log_greenlet: gevent.Greenlet[[], None] | None = None
        self._subscriptions = Subscriptions(
            (events.test_start, self._on_test_start),
            (events.test_stop, self._on_test_stop),
            (events.quitting, self._on_quitting),
        )

    def close(self) -> None:
        """For an exporter closed: leaves Locust's events and stops pushing."""
        self._subscriptions.cancel()
        for pusher in self._pushers:
            pusher.stop()
        if self._log_greenlet is not None:
            self._log_greenlet.kill()

    def start(
        self, environment: Environment, runner: Runner | None, server: _native.Server | None, pushes: bool
    ) -> None:
        """On ``init``, in the serving process, once ``server`` serves; ``pushes``: whether the push options
        are this exporter's (the first exporter's)."""
        if runner is None:
            return
        self._server = server
        linger = _options.option(environment, "linger")
        if linger is not None and not 0 <= linger < float("inf"):
            _options.fail(f"--prometheus-linger must be a number of seconds >= 0, got {linger}")
        self._linger = linger
        self._push_interval = _options.option(environment, "push-interval") or 5.0
        self._group_by_run = bool(_options.option(environment, "pushgateway-run-id"))
        instance = f"{socket.gethostname()}:{server.port if server else 0}"
        for option, protocol in PUSHES if pushes else ():
            url = _options.option(environment, option)
            if not url:
                continue
            try:
                settings = _credentials(option)
                if option == "remote_write":
                    protocol = _remote_write_protocol(environment)
                if option == "otlp":
                    protocol, url, settings = _otlp(environment, url, instance, settings)
                pusher = _native.Pusher(
                    self._recorder.registry, protocol, url, self._push_interval, instance, **settings
                )
            except ValueError as e:
                _options.fail(f"--prometheus-{option.replace('_', '-')}: {e}")
            self._pushers.append(pusher)
            logger.info("Pushing metrics by %s every %g s", pusher, self._push_interval)
        self._runner = runner
        if self._pushers:
            self._log_greenlet = gevent.spawn(self._log_pushes)

    def _on_test_start(self, **_kw: Any) -> None:
        self._stopped = None
        run_id = self._recorder.run_id
        if self._group_by_run and run_id:
            for pusher in self._pushers:
                pusher.set_grouping([("run_id", run_id)])

    def _on_test_stop(self, **_kw: Any) -> None:
        # A local runner's counts are final when its test stops: a scrape since then is the final one (as in
        # `--autoquit` runs, scraped while they linger). A master's are final only after its workers' last
        # reports, which Locust takes when it quits.
        if self._runner is not None and not isinstance(self._runner, MasterRunner):
            self._stopped = _native.Server.scrape_mark()

    def _log_pushes(self) -> None:
        while True:
            self._log_messages()
            gevent.sleep(LOG_INTERVAL)

    def _log_messages(self) -> None:
        for pusher in self._pushers:
            for message in pusher.take_messages():
                logger.warning("%s", message)

    def _on_quitting(self, **_kw: Any) -> None:
        runner = self._runner
        if runner is None:
            return
        if not isinstance(runner, MasterRunner):
            # On Ctrl-C a local runner is still running: stop it first, or the final scrape is not final.
            # (A master was quit by its own listener, which ran before this one.)
            runner.stop()
        started, quit_mark = _quit_began.setdefault(runner, (time.monotonic(), _native.Server.scrape_mark()))
        mark = self._stopped if self._stopped is not None else quit_mark
        for pusher in self._pushers:
            pusher.request_final()
        try:
            self._wait_for_scrape(mark, started)
            self._finish_pushes(started)
        except KeyboardInterrupt:
            logger.info("Final scrape and pushes skipped (Ctrl-C)")
        for pusher in self._pushers:
            pusher.stop()
        self._log_messages()
        for pusher in self._pushers:
            sent, failed, dropped, lost = pusher.stats()
            summary = f"Pushes by {pusher}: {sent} sent, {failed} failed, {dropped} samples dropped"
            if sent:
                logger.info("%s", summary)
                continue
            # A CI job must not go green with its metrics lost: the exit code of a failed test.
            logger.error("%s: nothing of the run reached it, %d batches lost (exit code 1)", summary, lost)
            if not runner.environment.process_exit_code:
                runner.environment.process_exit_code = 1

    def _linger_for(self, interval: float | None) -> float:
        if self._linger is not None:
            return self._linger
        return min(2 * interval, _options.LINGER_CAP) if interval is not None else 0.0

    def _wait_for_scrape(self, mark: int, started: float) -> None:
        server = self._server
        if server is None or server.closed:
            return
        scrapes, interval = server.scrapes_seen()
        linger = self._linger_for(interval)
        if scrapes == 0 or linger == 0:
            return
        deadline = started + linger
        logger.info(
            "Waiting up to %.1f s for a final scrape of /metrics (--prometheus-linger)",
            max(deadline - time.monotonic(), 0.0),
        )
        scraped = _wait_natively(lambda left: server.wait_for_scrape(mark, left), deadline)
        waited = time.monotonic() - started
        if scraped:
            logger.info("Final scrape of /metrics answered after %.1f s", waited)
        else:
            logger.warning(
                "No final scrape of /metrics within %.1f s: Prometheus misses what came after its last", waited
            )

    def _finish_pushes(self, started: float) -> None:
        linger = self._linger_for(self._push_interval)
        if linger == 0:
            return
        deadline = started + linger
        for pusher in self._pushers:
            if not _wait_natively(pusher.wait_final, deadline):
                logger.warning("The final push by %s did not end within --prometheus-linger", pusher)


def _remote_write_protocol(environment: Environment) -> str:
    """The remote-write protocol of --prometheus-remote-write-histograms (``auto`` by default), or of the deprecated
    --prometheus-remote-write-classic-only."""
    chosen: str | None = _options.option(environment, "remote-write-histograms")
    if _options.option(environment, "remote-write-classic-only"):
        logger.warning(
            "--prometheus-remote-write-classic-only is deprecated: use --prometheus-remote-write-histograms classic"
        )
        chosen = chosen or "classic"
    return "remote_write" if chosen in (None, "auto") else f"remote_write_{chosen}"


def _wait_natively(wait: Callable[[float], bool], deadline: float) -> bool:
    """Calls ``wait(seconds)`` (a native wait that releases the GIL) in gevent's thread pool, in slices, until it
    returns True or the deadline passes (once at least: what another exporter's wait let happen counts): the gevent
    loop runs on, and ``KeyboardInterrupt`` ends the wait."""
    pool = gevent.get_hub().threadpool
    while True:
        left = max(deadline - time.monotonic(), 0.0)
        if pool.apply(wait, (min(left, WAIT_SLICE),)):
            return True
        if left == 0:
            return False
