"""The end of a run: nothing recorded is lost when Locust quits.

The serving process (the master, or the only process) waits, when Locust quits, for one scrape of
``/metrics`` that started after the test stopped (the final scrape).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import gevent
import locust.log
from locust.runners import MasterRunner, WorkerRunner

from . import _native

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.event import Events
    from locust.runners import Runner

logger = logging.getLogger("locust_prometheus_exporter")

#: Longest default wait for the final scrape (seconds); the default is twice the scrape interval seen.
LINGER_CAP = 60.0
#: The native wait runs in slices of this many seconds, so that a second Ctrl-C is seen promptly.
WAIT_SLICE = 0.25


def install(events: Events) -> None:
    """Adds the listeners. Call it at import, before Locust makes its runner: Locust fires ``quitting``
    in reverse order, so this listener runs after the master's, which tells workers to quit and takes
    their last reports."""
    end = _EndOfRun()
    events.init_command_line_parser.add_listener(add_options)
    events.init.add_listener(end.on_init)
    events.quitting.add_listener(end.on_quitting)


def add_options(parser: Any, **_kw: Any) -> None:
    parser.add_argument(
        "--prometheus-linger",
        env_var="LOCUST_PROMETHEUS_LINGER",
        type=float,
        default=None,
        include_in_web_ui=False,
        help="Seconds Locust waits at quit for a final scrape of /metrics (default: twice the scrape interval "
        f"seen, at most {LINGER_CAP:g}; 0: do not wait). Only when /metrics was scraped during the run.",
    )


def _fail_init(message: str) -> None:
    """One error line; Locust then exits with code 1 after its ``init`` event, as for any failed listener."""
    logger.error("locust-prometheus-exporter: %s", message)
    locust.log.unhandled_greenlet_exception = True


class _EndOfRun:
    def __init__(self) -> None:
        self._runner: Runner | None = None
        self._linger: float | None = None

    def on_init(self, environment: Environment, runner: Runner | None = None, **_kw: Any) -> None:
        if runner is None or isinstance(runner, WorkerRunner):
            return
        self._runner = runner
        linger = getattr(environment.parsed_options, "prometheus_linger", None)
        if linger is not None and not 0 <= linger < float("inf"):
            _fail_init(f"--prometheus-linger must be a number of seconds >= 0, got {linger}")
            return
        self._linger = linger

    def on_quitting(self, **_kw: Any) -> None:
        runner = self._runner
        if runner is None:
            return
        if not isinstance(runner, MasterRunner):
            # On Ctrl-C a local runner is still running: stop it first, or the final scrape is not final.
            # (A master was quit by its own listener, which ran before this one.)
            runner.stop()
        mark = _native.scrape_mark()
        scrapes, interval = _native.scrapes_seen()
        linger = self._linger
        if linger is None:
            linger = min(2 * interval, LINGER_CAP) if interval is not None else LINGER_CAP
        if scrapes == 0 or linger == 0:
            return
        logger.info("Waiting up to %.1f s for a final scrape of /metrics (--prometheus-linger)", linger)
        started = time.monotonic()
        try:
            scraped = _wait_for_scrape(mark, started + linger)
        except KeyboardInterrupt:
            logger.info("Final scrape skipped (Ctrl-C)")
            return
        waited = time.monotonic() - started
        if scraped:
            logger.info("Final scrape of /metrics answered after %.1f s", waited)
        else:
            logger.warning("No final scrape of /metrics within %.1f s: Prometheus misses what came after its last", waited)


def _wait_for_scrape(mark: int, deadline: float) -> bool:
    """Waits in a native thread (no GIL held) while the gevent loop runs on; ``KeyboardInterrupt`` ends it."""
    pool = gevent.get_hub().threadpool
    while (left := deadline - time.monotonic()) > 0:
        if pool.apply(_native.wait_for_scrape, (mark, min(left, WAIT_SLICE))):
            return True
    return False
