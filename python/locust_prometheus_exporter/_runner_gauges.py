"""What only Locust's runner knows: users spawned, running and waiting, workers by state, and Locust's own
CPU and memory measures. Users spawned are counted as they are made; the rest is polled every second."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner
from locust.user.task import LOCUST_STATE_WAITING

from . import _native
from ._log import Once, logger

if TYPE_CHECKING:
    from locust.runners import Runner

#: How often the gauges are refreshed (seconds).
POLL_INTERVAL = 1.0
#: ``worker`` label of the health gauges for the master's own process, and for a process running alone.
MASTER, LOCAL = "master", "local"
#: Worker states as Locust's runners name them.
WORKER_STATES = ("ready", "spawning", "running", "cleanup", "stopping", "stopped", "missing")


class RunnerGauges:
    """The runner's gauges in one registry (through its request listener's handles)."""

    def __init__(self, registry: _native.CollectorRegistry, listener: _native.RequestListener) -> None:
        self._registry = registry
        self._listener = listener
        self._runner: Runner | None = None
        self._health_of: set[str] = set()
        self._logged = Once()
        self._poller: gevent.Greenlet[[], None] | None = None
        #: ``runner.spawn_users`` as found, and the wrapper that replaced it.
        self._wrapped: tuple[Callable[..., Any], Callable[..., Any]] | None = None
        self._stopped = False

    def start(self, runner: Runner) -> None:
        """Counts the users ``runner`` spawns (on a local runner or a worker) and starts polling it."""
        self._runner = runner
        if not isinstance(runner, MasterRunner):
            self._count_spawned_users(runner)
        self._poller = gevent.spawn(self._poll)

    def stop(self) -> None:
        """For a recorder released: the registry is no longer updated, and a recorder made again for it counts
        spawned users once."""
        self._stopped = True
        if self._poller is not None:
            self._poller.kill()
        if self._wrapped is not None:
            original, wrapper = self._wrapped
            # Someone may have wrapped ours since: then ours stays in their chain, as a pass-through.
            if self._runner is not None and self._runner.spawn_users is wrapper:
                self._runner.spawn_users = original  # type: ignore[method-assign]

    def refresh(self) -> None:
        runner = self._runner
        if isinstance(runner, MasterRunner):
            clients = list(runner.clients.values())
            live = [c.id for c in clients if c.state != STATE_MISSING]
            self._registry.set_live_workers(live, [c.id for c in clients])
            workers = self._listener.workers
            for state in WORKER_STATES:
                workers.labels(state).set(sum(1 for c in clients if c.state == state))
            health = {c.id: (c.cpu_usage, c.memory_usage) for c in clients}
            self._set_health({MASTER: (runner.current_cpu_usage, runner.current_memory_usage), **health})
        elif runner is not None:
            # Polled, not counted in each wait: a user's sleep costs Locust nothing extra.
            users = [g.args[0] for g in list(runner.user_greenlets) if g.args]
            self._listener.users_running.set(runner.user_count)
            waiting = sum(1 for u in users if getattr(u, "_state", None) == LOCUST_STATE_WAITING)
            self._listener.users_waiting.set(waiting)
            if not isinstance(runner, WorkerRunner):
                self._set_health({LOCAL: (runner.current_cpu_usage, runner.current_memory_usage)})

    def _set_health(self, health: dict[str, tuple[float, float]]) -> None:
        """Locust's own CPU and memory measures, one series per load-generating process once Locust
        measured it (every 10 s, the first after 10 s: a zero memory is "not yet"); a worker gone from
        the master's list loses its series."""
        cpu_usage, memory_usage = self._listener.cpu_usage, self._listener.memory_usage
        health = {worker: usage for worker, usage in health.items() if usage[1] > 0}
        for worker, (cpu, memory) in health.items():
            cpu_usage.labels(worker).set(cpu)
            memory_usage.labels(worker).set(memory)
        for gone in self._health_of - health.keys():
            cpu_usage.remove(gone)
            memory_usage.remove(gone)
        self._health_of = set(health)

    def _poll(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception:
                self._logged.exception("refreshing runner gauges")
            if self._listener.names_capped and self._logged.first("names capped"):
                logger.warning(
                    "locust-prometheus-exporter: more distinct request names than the cap; new ones are recorded as"
                    " name=%r (raise --prometheus-max-names / LOCUST_PROMETHEUS_MAX_NAMES, 0 for no cap, or group"
                    " URLs with name=)",
                    _native.OVERFLOW_NAME,
                )
            gevent.sleep(POLL_INTERVAL)

    def _count_spawned_users(self, runner: Runner) -> None:
        """Wraps ``runner.spawn_users``, through which every user of a local or worker runner is made."""
        original = runner.spawn_users
        users_total, users_running = self._listener.users_total, self._listener.users_running

        @functools.wraps(original)
        def spawn_users(*args: Any, **kwargs: Any) -> Any:
            new_users = original(*args, **kwargs)
            if not self._stopped:
                users_total.inc(len(new_users))
                users_running.set(runner.user_count)
            return new_users

        runner.spawn_users = spawn_users  # type: ignore[method-assign]
        self._wrapped = (original, spawn_users)
