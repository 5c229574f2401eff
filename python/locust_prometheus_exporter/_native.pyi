"""Native core of locust_prometheus_exporter (Rust). Users import the package, not this module."""

import os
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar, final

_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = [
    "DEFAULT_MAX_NAMES",
    "OVERFLOW_NAME",
    "REGISTRY",
    "CollectorRegistry",
    "Counter",
    "Gauge",
    "Histogram",
    "Pusher",
    "RequestListener",
    "Server",
    "Timed",
    "Timer",
    "__version__",
    "after_fork_in_child",
    "after_fork_in_parent",
    "before_fork",
    "bucket_bounds",
]

__version__: str
#: The `name` label value of requests past the cap on distinct request names.
OVERFLOW_NAME: str
#: Distinct request names recorded before new ones go under ``OVERFLOW_NAME`` (``max_names``'s default).
DEFAULT_MAX_NAMES: int

def bucket_bounds(buckets: Sequence[float] | None = None) -> list[float]:
    """Histogram bounds as every histogram takes them: checked (``ValueError``), the default ones for ``None``,
    a trailing ``+Inf`` dropped."""

@final
class CollectorRegistry:
    """Metrics registered together and served together, as in prometheus_client.

    A metric's name is unique within its registry; the same name may live in two registries.
    """

    def __new__(cls) -> CollectorRegistry: ...
    def render(self, openmetrics: bool = False, names: list[str] = ...) -> bytes:
        """The exposition a scrape gets (text 0.0.4, or OpenMetrics 1.0.0), without the process metrics;
        ``names`` keeps only the metrics with one of these sample names."""
    def take_report(self) -> bytes:
        """On a worker: the series changed since the last call, encoded for Locust's report."""
    def apply_report(self, client_id: str, data: bytes) -> list[str]:
        """On the master: merges one worker's report, leaving out what cannot be merged, and refusing it whole if
        it does not parse or is of a format version this build does not read. Returns the lines to log: each
        kind of problem once per worker."""
    def set_const_labels(self, labels: list[tuple[str, str]]) -> None:
        """Labels added to every sample; ``ValueError`` if one clashes with a metric's label names."""
    def set_live_workers(self, live: list[str], listed: list[str] | None = None) -> None:
        """On the master: the workers Locust has not marked missing, and every worker it lists; one it no longer
        lists is forgotten after a grace period (none is, without ``listed``)."""

#: The process's default registry: metrics and exporters made without ``registry=`` use it.
REGISTRY: CollectorRegistry

@final
class Timer:
    """Context manager and decorator returned by ``time()`` and ``track_inprogress()``."""

    def __enter__(self) -> Timer: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool: ...
    def __call__(self, func: _F) -> _F:
        """Decorates ``func``: every call is timed (or tracked) with a timer of its own (a ``Timed``)."""

@final
class Timed:
    """A function decorated with ``time()`` or ``track_inprogress()``; binds as a method, keeps its attributes."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...

@final
class Counter:
    """A monotonically increasing value, exposed as ``<name>_total`` (a trailing ``_total`` is not doubled).

    Raises ``ValueError`` for an invalid or already registered name, invalid label names.
    """

    def __new__(
        cls,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = ...,
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: CollectorRegistry | None = None,
        *,
        max_series: int = ...,
    ) -> Counter: ...
    def labels(self, *labelvalues: object, **labelkwargs: object) -> Counter:
        """The child for these label values (converted with ``str()``)."""
    def remove(self, *labelvalues: object) -> None:
        """Forgets the child with these label values (in this process only)."""
    def clear(self) -> None:
        """Forgets every child (in this process only)."""
    def inc(self, amount: float = 1.0) -> None:
        """Adds ``amount``; ``ValueError`` if it is negative, NaN or infinite."""

@final
class Gauge:
    """A value that goes up and down.

    ``multiprocess_mode`` says how the values set on Locust workers combine on the master:
    ``sum``, ``max``, ``min``, ``mostrecent``, ``all`` (one series per worker, label ``worker``), and the
    ``live`` variants of each, which leave out workers Locust marked missing. Default ``livesum``.
    """

    def __new__(
        cls,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = ...,
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: CollectorRegistry | None = None,
        multiprocess_mode: str = "livesum",
        *,
        max_series: int = ...,
    ) -> Gauge: ...
    def labels(self, *labelvalues: object, **labelkwargs: object) -> Gauge:
        """The child for these label values (converted with ``str()``)."""
    def remove(self, *labelvalues: object) -> None:
        """Forgets the child with these label values (in this process only)."""
    def clear(self) -> None:
        """Forgets every child (in this process only)."""
    def inc(self, amount: float = 1.0) -> None:
        """Adds ``amount``."""
    def dec(self, amount: float = 1.0) -> None:
        """Subtracts ``amount``."""
    def set(self, value: float) -> None:
        """Sets the value (NaN and infinities are allowed)."""
    def set_to_current_time(self) -> None:
        """Sets the value to the current Unix time in seconds."""
    def track_inprogress(self) -> Timer:
        """Adds 1 while a block or decorated function runs."""
    def time(self) -> Timer:
        """Sets the gauge to the duration in seconds of a block or decorated function."""

@final
class Histogram:
    """Observations counted in buckets (upper bounds in increasing order; ``+Inf`` is implied).

    ``native=True`` adds Prometheus native buckets (exponential, of ``native_schema`` from -4 to 8, 3 by
    default) beside the classic ones, served in the protobuf format to a Prometheus that asks for it.
    """

    def __new__(
        cls,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = ...,
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: CollectorRegistry | None = None,
        buckets: Sequence[float] | None = None,
        native: bool = False,
        native_schema: int | None = None,
        *,
        max_series: int = ...,
    ) -> Histogram: ...
    def labels(self, *labelvalues: object, **labelkwargs: object) -> Histogram:
        """The child for these label values (converted with ``str()``)."""
    def remove(self, *labelvalues: object) -> None:
        """Forgets the child with these label values (in this process only)."""
    def clear(self) -> None:
        """Forgets every child (in this process only)."""
    def observe(self, amount: float) -> None:
        """Counts one observation; ``ValueError`` for NaN."""
    def time(self) -> Timer:
        """Observes the duration in seconds of a block or decorated function."""

@final
class RequestListener:
    """Locust's metrics in one registry, and the callable registered on ``events.request``."""

    def __new__(
        cls, registry: CollectorRegistry, buckets: Sequence[float] | None = None, per_worker: bool = False
    ) -> RequestListener: ...
    def __call__(self, **kwargs: Any) -> None:
        """Records one request event; never raises."""
    def set_buckets(self, buckets: Sequence[float]) -> None:
        """Other buckets for ``locust_request_duration_seconds``; drops what it recorded so far."""
    def set_max_names(self, max: int) -> None:
        """At most ``max`` distinct request names (0: no cap); new ones past it go under ``name="<other>"``."""
    @property
    def names_capped(self) -> bool:
        """Whether a request name was recorded under the overflow name in this process."""
    @property
    def test_info(self) -> Gauge: ...
    @property
    def users_total(self) -> Counter: ...
    @property
    def users_running(self) -> Gauge: ...
    @property
    def users_waiting(self) -> Gauge: ...
    @property
    def workers(self) -> Gauge: ...
    @property
    def cpu_usage(self) -> Gauge: ...
    @property
    def memory_usage(self) -> Gauge: ...

@final
class Server:
    """A ``/metrics`` HTTP server of ``registry`` on a native thread; binds when constructed (``OSError`` if not)."""

    host: str
    port: int
    tls: bool
    def __new__(
        cls, registry: CollectorRegistry, host: str, port: int, web_config: str | os.PathLike[str] | None = None
    ) -> Server:
        """``web_config``: an exporter-toolkit web-config file, read now (``ValueError``, or ``OSError``
        when it or a file it names cannot be read)."""
    def close(self) -> None:
        """Stops serving and frees the port; idempotent."""
    @property
    def closed(self) -> bool: ...
    @staticmethod
    def scrape_mark() -> int:
        """Now, on the clock of ``wait_for_scrape`` (nanoseconds, monotonic)."""
    def scrapes_seen(self) -> tuple[int, float | None]:
        """``(scrapes started, the scrape interval seen in seconds or None)`` of this server's ``/metrics``."""
    def wait_for_scrape(self, mark: int, timeout: float) -> bool:
        """Waits, without the GIL, until a full scrape of ``/metrics`` that started after ``mark`` has been
        answered, or ``timeout`` seconds passed; returns whether one was."""

def before_fork() -> None:
    """Before a fork: waits until no native thread is inside a registry (renders under way end)."""

def after_fork_in_parent() -> None:
    """After a fork, in the parent: lets renders go on."""

def after_fork_in_child() -> None:
    """In a forked child: zero every registry's values and forget the parent's servers."""

@final
class Pusher:
    """Pushes ``registry``'s metrics from a native thread (``protocol``: ``"remote_write"``, ``"remote_write_native"``,
    ``"remote_write_classic"`` (native histograms beside the classic buckets until refused, always, or never),
    ``"pushgateway"``, or ``"otlp"``, ``"otlp_exponential"``, ``"otlp_explicit"`` (histograms with native buckets as
    exponential ones until refused, always, or never), with the OTLP ``resource`` attributes).

    ``ValueError`` for a malformed URL or header, an unreadable CA file, or a bad interval.
    """

    def __new__(
        cls,
        registry: CollectorRegistry,
        protocol: str,
        url: str,
        interval: float,
        instance: str,
        *,
        username: str | None = None,
        password: str | None = None,
        bearer_token: str | None = None,
        ca_file: str | None = None,
        headers: Sequence[tuple[str, str]] = ...,
        resource: Sequence[tuple[str, str]] = ...,
    ) -> Pusher: ...
    def set_grouping(self, grouping: Sequence[tuple[str, str]]) -> None:
        """Pushgateway grouping labels after ``job`` (such as ``run_id``), for the pushes from now on."""
    def request_final(self) -> None:
        """Starts the final push (after the push under way, if any)."""
    def wait_final(self, timeout: float) -> bool:
        """Waits without the GIL until the final push is done or ``timeout`` seconds passed; whether it is done."""
    def take_messages(self) -> list[str]:
        """Log lines from the pushing thread since the last call (one per kind of failure)."""
    def stats(self) -> tuple[int, int, int, int]:
        """``(pushes sent, attempts failed, samples dropped, batches lost)``: a batch not sent is lost, whether
        dropped or still being tried."""
    def stop(self) -> None:
        """Stops the pushing thread; a push under way is abandoned at its next retry."""
