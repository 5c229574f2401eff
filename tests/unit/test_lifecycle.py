"""What an exporter sets up in Locust, in process, and what closing it undoes: its listeners, its end of run
(the final scrape, the pushes), its recorder's runner gauges; the final scrapes of several exporters at quit."""

from __future__ import annotations

import logging
import time
from argparse import Namespace
from types import SimpleNamespace

import gevent
import locust
import pytest
from locust import User, constant, task
from locust.env import Environment
from locust.event import EventHook, Events
from locust_prometheus_exporter import PrometheusExporter, _exporter, _native, _recording, _runner_gauges
from locust_prometheus_exporter._end_of_run import EndOfRun
from support.receivers import Recorder
from support.scrape import http_get, samples_of, total

#: --prometheus-linger of the tests of the final scrape (seconds).
LINGER = 1.0


class Idle(User):
    wait_time = constant(60)

    @task
    def nothing(self) -> None:
        pass


@pytest.fixture
def runner():
    """A local runner on events of its own: what it fires reaches only what the test subscribed there."""
    runner = Environment(user_classes=[Idle], events=Events()).create_local_runner()
    yield runner
    runner.quit()


def handlers(events: Events) -> dict[str, int]:
    """How many listeners each event of `events` has."""
    return {name: len(hook._handlers) for name, hook in vars(events).items() if isinstance(hook, EventHook)}


def settings(**options: object) -> SimpleNamespace:
    """An environment as the end of run reads it: the ``--prometheus-<name>`` options given, the rest unset."""
    return SimpleNamespace(parsed_options=Namespace(**{f"prometheus_{k}": v for k, v in options.items()}))


def test_a_closed_exporter_leaves_locusts_events(registry):
    with PrometheusExporter("127.0.0.1", 0, registry=registry):
        pass  # the first exporter of the process also adds the options to Locust's parser, for good
    before = handlers(locust.events)
    e = PrometheusExporter("127.0.0.1", 0, registry=registry)
    assert handlers(locust.events) != before
    e.close()
    e.close()
    assert handlers(locust.events) == before


def test_once_the_first_exporter_is_closed_the_next_made_takes_the_options(registry, monkeypatch):
    monkeypatch.setattr(_exporter, "_first", None)  # as in a fresh process
    first = PrometheusExporter("127.0.0.1", 0, registry=registry)
    other = PrometheusExporter("127.0.0.1", 0, registry=registry)
    other.close()
    assert PrometheusExporter.first() is first
    first.close()
    assert PrometheusExporter.first() is None
    with PrometheusExporter("127.0.0.1", 0, registry=registry) as e:
        assert PrometheusExporter.first() is e
    assert PrometheusExporter.first() is None


def test_a_closed_end_of_run_leaves_its_events_and_stops_pushing(registry, runner):
    receiver = Recorder([])
    events = Events()
    before = handlers(events)
    end = EndOfRun(events, SimpleNamespace(registry=registry, run_id=None))
    end.start(settings(pushgateway=receiver.url, push_interval=0.05), runner, None, pushes=True)
    deadline = time.monotonic() + 10
    while len(receiver.requests) < 2 and time.monotonic() < deadline:
        gevent.sleep(0.05)
    assert len(receiver.requests) >= 2, "pushes every 0.05 s"
    end.close()
    pushed = len(receiver.requests)
    gevent.sleep(0.5)  # 10 push intervals: only the push under way at close() may still land
    assert len(receiver.requests) <= pushed + 1, (pushed, len(receiver.requests))
    assert handlers(events) == before
    receiver.shutdown()
    receiver.server_close()


def test_a_released_recorder_stops_counting_and_polling_the_runner(registry, runner, monkeypatch):
    monkeypatch.setattr(_runner_gauges, "POLL_INTERVAL", 0.01)

    def users(name: str) -> float:
        return total(samples_of(registry.render(names=[name]).decode()), name)

    recorder = _recording.recorder_for(registry, None, False, 0)
    recorder._on_init(runner.environment, runner)  # as Locust's init does
    runner.spawn_users({"Idle": 1})
    deadline = time.monotonic() + 10
    while users("locust_users_running") != 1 and time.monotonic() < deadline:
        gevent.sleep(0.01)  # the poller's next round
    assert (users("locust_users_total"), users("locust_users_running")) == (1, 1)
    recorder.release()
    runner.spawn_users({"Idle": 2})
    gevent.sleep(0.05)  # 5 poll intervals: a recorder still polling would have seen the new users
    assert (users("locust_users_total"), users("locust_users_running")) == (1, 1), "released: not updated"
    again = _recording.recorder_for(registry, None, False, 0)
    again._on_init(runner.environment, runner)
    runner.spawn_users({"Idle": 1})
    again.release()
    assert users("locust_users_total") == 2, "each user counted once"


def quit_with_two_exporters(registry, runner, scrape_after: float | None, caplog) -> tuple[float, int]:
    """Fires ``quitting`` with two exporters of `registry` serving (each scraped once during the run, so that
    each waits for a final scrape), both scraped again ``scrape_after`` seconds into it if given: how long the
    quit took, and how many final scrapes were logged as answered."""
    events = runner.environment.events
    servers = [_native.Server(registry, "127.0.0.1", 0) for _ in range(2)]
    urls = [f"http://127.0.0.1:{server.port}/metrics" for server in servers]
    for server, url in zip(servers, urls, strict=True):
        http_get(url)
        EndOfRun(events, SimpleNamespace(registry=registry, run_id=None)).start(
            settings(linger=LINGER), runner, server, pushes=False
        )
    if scrape_after is not None:
        gevent.spawn_later(scrape_after, lambda: [http_get(url) for url in urls])
    caplog.set_level(logging.INFO, "locust_prometheus_exporter")
    began = time.monotonic()
    events.quitting.fire(environment=runner.environment, reverse=True)
    took = time.monotonic() - began
    for server in servers:
        server.close()
    return took, sum(r.getMessage().startswith("Final scrape of /metrics answered") for r in caplog.records)


def test_the_waits_for_the_final_scrapes_of_several_exporters_do_not_add_up(registry, runner, caplog):
    took, answered = quit_with_two_exporters(registry, runner, None, caplog)
    # Each waits its linger, at the same time: less than the two waits one after the other.
    assert (answered, LINGER <= took < 2 * LINGER) == (0, True), (took, caplog.text)


def test_a_scrape_while_one_exporter_waits_is_final_for_the_others(registry, caplog):
    """On a master, whose counts are final only at quit: the final scrape is one that started after the quit began.
    (The master's own quitting listener, which runs last, quits it.)"""
    runner = Environment(events=Events()).create_master_runner("127.0.0.1", 0)  # a port ZeroMQ picks
    _, answered = quit_with_two_exporters(registry, runner, 0.3 * LINGER, caplog)
    assert answered == 2, caplog.text
