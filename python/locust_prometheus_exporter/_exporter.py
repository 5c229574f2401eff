"""The public exporter object: configuration and the server's lifetime.

An exporter owns what it uses: the recorder of its registry (shared with the other exporters of that
registry), its server, and its end of run. None of them knows of the exporter.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import locust
from locust.runners import WorkerRunner

from . import _native, _options, _recording
from ._end_of_run import EndOfRun
from ._events import Subscriptions
from ._log import logger

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.runners import Runner

#: The first exporter made in this process, while open: the one the ``--prometheus-*`` options address.
_first: PrometheusExporter | None = None


class PrometheusExporter:
    """Serves Locust's metrics and the custom metrics on ``http://host:port/metrics``.

    Constructing it (at import of the locustfile, as documented) only subscribes to Locust's events: no
    socket, no thread, since ``locust --processes`` forks after the import. The server starts on Locust's
    ``init`` event in the process that is not a worker (the master, or the only process), so workers
    never bind. ``--prometheus-host`` / ``--prometheus-port`` (or ``LOCUST_PROMETHEUS_HOST`` /
    ``LOCUST_PROMETHEUS_PORT``) override ``host`` and ``port`` given here, for the exporter :meth:`first` returns.

    Args:
        host: address to listen on (``"0.0.0.0"`` all IPv4, ``"::"`` all, ``"127.0.0.1"`` local only).
        port: TCP port; 0 picks a free one (see :attr:`address`).
        registry: the metrics served, and where Locust's metrics are recorded (the default
            :data:`REGISTRY` holds every metric made without ``registry=``).
        buckets: upper bounds in seconds of ``locust_request_duration_seconds`` (default 1 ms to 60 s).
        per_worker_metrics: in distributed mode, one ``locust_users_running``/``waiting`` series per
            worker (label ``worker``) instead of their sum.
        max_names: distinct request names recorded (0: no cap); past it, new names are recorded under
            ``name="<other>"`` and counted in ``locust_exporter_names_overflowed_total``.
            ``--prometheus-max-names`` overrides it.
        web_config: path of an exporter-toolkit web-config file (TLS, mutual TLS, basic auth), the
            format of node_exporter's ``--web.config.file``; ``--prometheus-web-config`` overrides it.
            Read when serving starts: a bad file raises ``ValueError`` (``OSError`` if unreadable).

    Raises:
        TypeError, ValueError: for an invalid argument, or ``buckets``, ``per_worker_metrics`` or ``max_names``
            other than those of an open exporter of the same registry (``ValueError`` naming the argument).
    """

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 9091,
        *,
        registry: _native.CollectorRegistry = _native.REGISTRY,
        buckets: Iterable[float] | None = None,
        per_worker_metrics: bool = False,
        max_names: int = _native.DEFAULT_MAX_NAMES,
        web_config: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise TypeError(f"host must be a non-empty str, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, got {port!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {port}")
        if not isinstance(registry, _native.CollectorRegistry):
            raise TypeError(f"registry must be a CollectorRegistry, got {registry!r}")
        self._host = host
        self._port = port
        self._web_config = os.fspath(web_config) if web_config is not None else None
        self._registry = registry
        self._server: _native.Server | None = None
        self._closed = False
        self._init_seen = False
        self._recorder = recorder = _recording.recorder_for(
            registry, list(buckets) if buckets is not None else None, per_worker_metrics, max_names
        )
        global _first
        if _first is None:
            _first = self
        events = locust.events
        _options.install(events)
        self._init = Subscriptions((events.init, self._on_init))
        self._end = EndOfRun(events, recorder)

    @classmethod
    def first(cls) -> PrometheusExporter | None:
        """The first exporter made in this process, which the ``--prometheus-*`` options address; ``None`` if none,
        or once it is closed (the next one made takes the options)."""
        return _first

    @property
    def registry(self) -> _native.CollectorRegistry:
        """The registry served, into which Locust's metrics are recorded."""
        return self._registry

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` actually listened on, or ``None`` while not serving."""
        server = self._server
        if server is None or server.closed:
            return None
        return (server.host, server.port)

    @property
    def url(self) -> str | None:
        """``http(s)://host:port/metrics`` while serving, ``None`` otherwise."""
        server = self._server
        if server is None or server.closed:
            return None
        return f"{'https' if server.tls else 'http'}://{server.host}:{server.port}/metrics"

    def serve(
        self, host: str | None = None, port: int | None = None, web_config: str | os.PathLike[str] | None = None
    ) -> None:
        """Starts serving now, if not already (``OSError`` when the address cannot be bound, ``ValueError``
        or ``OSError`` for a bad web-config file).

        Locust's ``init`` calls this; call it yourself only outside Locust.
        """
        if self._server is not None or self._closed:
            return
        port = self._port if port is None else port
        web_config = os.fspath(web_config) if web_config else self._web_config
        self._server = _native.Server(self._registry, host or self._host, port, web_config)

    def start(self, user: Any = None) -> None:
        """For ``on_start``: starts serving if Locust's ``init`` never came (plain Python use); never raises.

        It is idempotent and does not count users: Locust's runner does, for every user.
        """
        if self._init_seen or self._server is not None or self._closed:
            return
        try:
            self.serve()
        except Exception:
            logger.exception("locust-prometheus-exporter could not start serving")

    def _on_init(self, environment: Environment, runner: Runner | None = None, **_kw: Any) -> None:
        """Serves in the process that is not a worker; a configuration it cannot serve stops Locust."""
        self._init_seen = True
        if isinstance(runner, WorkerRunner):
            return
        takes_options = _first is self
        host = port = web_config = None
        if takes_options:
            host, port, web_config = (_options.option(environment, name) for name in ("host", "port", "web-config"))
        try:
            self.serve(host, port, web_config)
        except (OSError, ValueError) as e:
            _options.fail(e.strerror if isinstance(e, OSError) and e.strerror else str(e))
        logger.info("Prometheus metrics on %s", self.url)
        self._end.start(environment, runner, self._server, pushes=takes_options)

    def stop(self, user: Any = None) -> None:
        """For ``on_stop``: does nothing, so the endpoint keeps serving the final values until Locust quits."""

    def close(self) -> None:
        """Stops serving and frees the port, and leaves Locust's events. Idempotent; the exporter does not serve
        again. Once no exporter of its registry is open, Locust's events are no longer recorded into the registry."""
        global _first
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        self._init.cancel()
        self._end.close()
        self._recorder.release()
        if _first is self:
            _first = None

    def __enter__(self) -> PrometheusExporter:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrometheusExporter(host={self._host!r}, port={self._port!r}, address={self.address!r})"
