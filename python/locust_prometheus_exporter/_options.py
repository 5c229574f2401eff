"""The ``--prometheus-*`` command-line options, their parsing, and the one way a bad one stops Locust.

Each option is also read from ``LOCUST_PROMETHEUS_*`` and from ``prometheus-*`` keys of locust.conf.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from . import _native
from ._log import logger

if TYPE_CHECKING:
    from locust.event import Events

#: Longest default wait for the final scrape (seconds); the default is twice the scrape interval seen.
LINGER_CAP = 60.0

_added = False


def install(events: Events) -> None:
    """Adds the options to Locust's parser, once per process."""
    global _added
    if not _added:
        events.init_command_line_parser.add_listener(add_options)
        _added = True


def check_max_names(value: object, what: str) -> int:
    """``value`` if it is a valid cap on request names; ``TypeError``/``ValueError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be 0 (no cap) or more, got {value}")
    return value


def _max_names(text: str) -> int:
    """``--prometheus-max-names``: bad values are a usage error (one line, exit 2), as argparse makes them."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    try:
        return check_max_names(value, "--prometheus-max-names")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def numbers(text: str) -> list[float]:
    """``--prometheus-buckets``: ``"0.1,1,10"`` -> ``[0.1, 1.0, 10.0]``; the bounds are checked where they are set."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as e:
        raise ValueError(f"--prometheus-buckets: {e}") from None


def pairs(text: str, what: str) -> list[tuple[str, str]]:
    """``"env=staging,lg=eu1"`` -> ``[("env", "staging"), ("lg", "eu1")]``; ``ValueError`` prefixed by ``what``
    (the option or variable read) for a part without ``=``."""
    found = []
    for part in filter(str.strip, text.split(",")):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{what}: expected name=value, got {part!r}")
        found.append((name.strip(), value.strip()))
    return found


def add_options(parser: Any, **_kw: Any) -> None:
    """``init_command_line_parser`` hook."""

    def add(name: str, text: str, **kind: Any) -> None:
        parser.add_argument(
            f"--prometheus-{name}",
            env_var=f"LOCUST_PROMETHEUS_{name.upper().replace('-', '_')}",
            include_in_web_ui=False,
            help=text,
            **kind,
        )

    add("host", "Address the Prometheus exporter listens on (overrides the locustfile)", default=None)
    add("port", "Port of the Prometheus exporter's /metrics (overrides the locustfile)", type=int, default=None)
    add("buckets", "Comma-separated upper bounds in seconds of locust_request_duration_seconds", default=None)
    add("labels", "Comma-separated name=value labels added to every sample, e.g. env=staging,lg=eu1", default=None)
    add(
        "max-names",
        f"Distinct request names kept, later ones as {_native.OVERFLOW_NAME}; 0: no cap",
        type=_max_names,
        default=None,
    )
    add(
        "web-config",
        "Web-config file (TLS, basic auth) in the format of node_exporter's --web.config.file",
        default=None,
    )
    add(
        "linger",
        "Seconds Locust waits at quit for a final scrape of /metrics and the final pushes (default: twice "
        f"the scrape or push interval, at most {LINGER_CAP:g}; 0: do not wait). A final scrape is waited for "
        "only when /metrics was scraped during the run.",
        type=float,
        default=None,
    )
    add(
        "remote-write",
        "Prometheus remote write URL (e.g. http://prometheus:9090/api/v1/write) to push to; credentials from "
        "LOCUST_PROMETHEUS_REMOTE_WRITE_USERNAME/_PASSWORD or _BEARER_TOKEN, a CA from _CA_FILE",
        default=None,
    )
    add(
        "remote-write-classic-only",
        "Send histograms by remote write as classic buckets only, without the native histogram samples "
        "(for a receiver without native histograms, e.g. Prometheus without --enable-feature=native-histograms)",
        action="store_true",
        default=False,
    )
    add("pushgateway", 'Pushgateway URL (e.g. http://pushgateway:9091) to push to, under job="locust"', default=None)
    add(
        "pushgateway-run-id",
        "Add the test's run_id to the Pushgateway grouping key: each test keeps its own group",
        action="store_true",
        default=False,
    )
    add(
        "otlp",
        "OTLP/HTTP endpoint (e.g. http://collector:4318 or http://prometheus:9090/api/v1/otlp) to push to, at "
        "URL/v1/metrics; headers, CA file and resource attributes from the OTEL_EXPORTER_OTLP_* variables, "
        "OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME",
        default=None,
    )
    add(
        "otlp-histograms",
        "How OTLP sends histograms with native buckets: exponential, explicit (the classic buckets), or auto "
        "(exponential until the receiver refuses them, then explicit)",
        choices=("auto", "exponential", "explicit"),
        default="auto",
    )
    add(
        "push-interval",
        "Seconds between pushes (remote write, Pushgateway, OTLP); a final push is made at quit",
        type=float,
        default=5.0,
    )


def option(environment: Any, name: str) -> Any:
    """The value of ``--prometheus-<name>`` (``None`` when Locust parsed no such option)."""
    return getattr(environment.parsed_options, f"prometheus_{name.replace('-', '_')}", None)


def fail(message: str) -> NoReturn:
    """A configuration the exporter cannot serve stops Locust (exit code 1) with one line, not the traceback
    Locust prints for a failing handler: the test would run with nobody able to see it."""
    logger.error("locust-prometheus-exporter: %s", message)
    sys.exit(1)
