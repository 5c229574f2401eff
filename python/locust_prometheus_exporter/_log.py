"""The package's logger, and logging a recurring failure once."""

from __future__ import annotations

import logging

logger = logging.getLogger("locust_prometheus_exporter")


class Once:
    """Remembers what was logged: a failure in a hook that runs every second or every report is logged once."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def first(self, what: str) -> bool:
        """Whether ``what`` is new (and from now on, seen)."""
        if what in self._seen:
            return False
        self._seen.add(what)
        return True

    def exception(self, what: str) -> None:
        """Logs the exception being handled, the first time ``what`` fails."""
        if self.first(what):
            logger.exception("locust-prometheus-exporter: %s failed (logged once)", what)
