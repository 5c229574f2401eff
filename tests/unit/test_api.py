"""The Python API: prometheus_client-shaped metrics, every bad input, and the rendered exposition.

Each test makes its metrics in a registry of its own (the `registry` fixture)."""

from __future__ import annotations

import math
import time

import pytest
from locust_prometheus_exporter import CollectorRegistry, Counter, Gauge, Histogram
from support.scrape import samples_of, total

#: Seconds spent inside a timer.
HELD = 0.02


def rendered(registry: CollectorRegistry) -> dict:
    """The whole registry in both formats: the same samples either way (Prometheus's own linter reads such
    metrics in tests/e2e/test_exposition_lint.py)."""
    samples = samples_of(registry.render().decode())
    openmetrics = samples_of(registry.render(openmetrics=True).decode(), openmetrics=True)
    assert {k: repr(v) for k, v in samples.items()} == {k: repr(v) for k, v in openmetrics.items()}
    return samples


def test_counter_is_exposed_with_total_suffix_once(registry):
    Counter("plain", "plain", registry=registry).inc()
    Counter("suffixed_total", "suffixed", registry=registry).inc(2.5)
    s = rendered(registry)
    assert total(s, "plain_total") == 1
    assert total(s, "suffixed_total") == 2.5
    assert not any(name.endswith("_total_total") for name, _ in s)


def test_labels_by_position_keyword_and_coercion(registry):
    c = Counter("m", "h", ["method", "code"], registry=registry)
    c.labels("GET", 200).inc()
    c.labels(code="200", method="GET").inc()
    c.labels(None, 1.5).inc()
    s = rendered(registry)
    assert total(s, "m_total", method="GET", code="200") == 2
    assert total(s, "m_total", method="None", code="1.5") == 1


def test_distinct_label_values_never_share_a_series(registry):
    c = Counter("m", "h", ["a", "b"], registry=registry)
    c.labels("ab", "c").inc(1)
    c.labels("a", "bc").inc(10)
    s = rendered(registry)
    assert total(s, "m_total", a="ab", b="c") == 1
    assert total(s, "m_total", a="a", b="bc") == 10


def test_escaping_round_trips_through_both_parsers(registry):
    value = 'back\\slash "quoted" new\nline # é \\n'
    Gauge("m", 'help with \\ and\nnewline and "quotes"', ["v"], registry=registry).labels(value).set(3)
    assert total(rendered(registry), "m", v=value) == 3


def test_gauge_operations_and_special_values(registry):
    g = Gauge("g", "h", registry=registry)
    g.set(5)
    g.inc()
    g.dec(2.5)
    assert total(rendered(registry), "g") == 3.5
    for v in (math.inf, -math.inf):
        g.set(v)
        assert total(rendered(registry), "g") == v
    g.set(math.nan)
    assert math.isnan(total(rendered(registry), "g"))
    g.set_to_current_time()
    assert total(rendered(registry), "g") > 1.7e9


def test_histogram_buckets_sum_and_count(registry):
    h = Histogram("h", "h", ["route"], registry=registry, buckets=[0.1, 1, float("inf")])
    child = h.labels("/x")
    for v in (0.05, 0.1, 0.5, 5):
        child.observe(v)
    s = rendered(registry)
    assert total(s, "h_bucket", route="/x", le="0.1") == 2
    assert total(s, "h_bucket", route="/x", le="1.0") == 3
    assert total(s, "h_bucket", route="/x", le="+Inf") == 4
    assert total(s, "h_count", route="/x") == 4
    assert total(s, "h_sum", route="/x") == pytest.approx(5.65)


def test_timers_and_inprogress_as_context_managers_and_decorators(registry):
    h = Histogram("h", "h", registry=registry)
    outside = time.perf_counter()
    with h.time():
        time.sleep(HELD)
    h_outside = time.perf_counter() - outside
    g = Gauge("g", "g", registry=registry)

    @g.track_inprogress()
    def inside(x):
        return x, total(rendered(registry), "g")

    assert inside(7) == (7, 1)
    timed = Gauge("t", "t", registry=registry)
    outside = time.perf_counter()
    with timed.time():
        time.sleep(HELD)
    t_outside = time.perf_counter() - outside
    s = rendered(registry)
    assert total(s, "h_count") == 1
    # The timers measure the time spent inside: at least the sleep, at most the time around the block.
    assert HELD <= total(s, "h_sum") <= h_outside
    assert total(s, "g") == 0
    assert HELD <= total(s, "t") <= t_outside


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "é", "__reserved"])
def test_invalid_metric_names_raise_and_register_nothing(registry, name):
    with pytest.raises(ValueError, match="invalid metric name"):
        Counter(name, "h", registry=registry)
    assert registry.render() == b""


@pytest.mark.parametrize("labels", [["1a"], ["a:b"], ["a-b"], ["__x"], ["a", "a"]])
def test_invalid_label_names_raise(registry, labels):
    with pytest.raises(ValueError, match="label name"):
        Gauge("m", "h", labels, registry=registry)


def test_le_is_reserved_on_histograms_only(registry):
    with pytest.raises(ValueError, match="reserved"):
        Histogram("m", "h", ["le"], registry=registry)
    Gauge("m", "h", ["le"], registry=registry)


def test_duplicates_and_derived_name_clashes_raise_and_keep_the_first(registry):
    first = Counter("dup", "h", registry=registry)
    for clash in (lambda: Counter("dup", "h", registry=registry), lambda: Gauge("dup_total", "h", registry=registry),
                  lambda: Gauge("dup", "h", registry=registry),
                  lambda: Histogram("dup_created", "h", registry=registry)):  # fmt: skip
        with pytest.raises(ValueError, match="duplicated timeseries"):
            clash()
    Histogram("hist", "h", registry=registry)
    with pytest.raises(ValueError, match="duplicated"):
        Gauge("hist_bucket", "h", registry=registry)
    first.inc()
    assert total(rendered(registry), "dup_total") == 1


def test_failed_constructor_leaves_the_name_free(registry):
    with pytest.raises(ValueError):
        Counter("m", "h", ["bad-label"], registry=registry)
    assert registry.render() == b""
    Counter("m", "h", registry=registry).inc()
    assert total(rendered(registry), "m_total") == 1


@pytest.mark.parametrize("amount", [-1, math.nan, math.inf])
def test_counter_rejects_negative_nan_and_infinite_increments(registry, amount):
    c = Counter("m", "h", registry=registry)
    c.inc(2)
    with pytest.raises(ValueError, match="non-negative"):
        c.inc(amount)
    assert total(rendered(registry), "m_total") == 2


@pytest.mark.parametrize("value", ["1", None, object()])
def test_non_numbers_raise_type_error(registry, value):
    with pytest.raises(TypeError):
        Counter("c", "h", registry=registry).inc(value)
    with pytest.raises(TypeError):
        Gauge("g", "h", registry=registry).set(value)


def test_label_misuse_raises_value_error(registry):
    c = Counter("m", "h", ["a"], registry=registry)
    with pytest.raises(ValueError, match="incorrect label count"):
        c.labels("x", "y")
    with pytest.raises(ValueError, match="incorrect label count"):
        c.labels()
    with pytest.raises(ValueError, match="incorrect label names"):
        c.labels(b="x")
    with pytest.raises(ValueError, match="both"):
        c.labels("x", a="y")
    with pytest.raises(ValueError, match="already"):
        c.labels("x").labels("y")
    with pytest.raises(ValueError, match="missing label values"):
        c.inc()
    with pytest.raises(ValueError, match="no label names"):
        Counter("unlabelled", "h", registry=registry).labels("x")


def test_label_value_whose_str_raises_propagates_and_records_nothing(registry):
    class Bad:
        def __str__(self):
            raise TypeError("no str")

    c = Counter("m", "h", ["a"], registry=registry)
    with pytest.raises(TypeError, match="no str"):
        c.labels(Bad())
    assert not [key for key in rendered(registry) if key[0] == "m_total"]


def test_label_value_whose_str_updates_the_same_metric_does_not_deadlock(registry):
    c = Counter("m", "h", ["a"], registry=registry)

    class Reentrant:
        def __str__(self):
            c.labels("inner").inc()
            return "outer"

    c.labels(Reentrant()).inc()
    s = rendered(registry)
    assert total(s, "m_total", a="inner") == 1
    assert total(s, "m_total", a="outer") == 1


@pytest.mark.parametrize("buckets", [[1, 0.5], [1, 1], [math.nan], [], [math.inf]])
def test_bad_buckets_raise(registry, buckets):
    with pytest.raises(ValueError, match="buckets"):
        Histogram("m", "h", registry=registry, buckets=buckets)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"native": True, "native_schema": 9}, "schema 9"),
        ({"native": True, "native_schema": -5}, "schema -5"),
        ({"native_schema": 2}, "needs native=True"),
    ],
)
def test_bad_native_options_raise_and_register_nothing(registry, kwargs, error):
    with pytest.raises(ValueError, match=error):
        Histogram("m", "h", registry=registry, **kwargs)
    Histogram("m", "h", registry=registry, native=True, native_schema=-4)


def test_native_histogram_keeps_the_classic_samples(registry):
    h = Histogram("m", "h", registry=registry, buckets=[1.0], native=True)
    h.observe(0.5)
    s = rendered(registry)
    assert total(s, "m_bucket", le="1.0") == total(s, "m_count") == 1


def test_histogram_rejects_nan_observation(registry):
    h = Histogram("m", "h", registry=registry)
    with pytest.raises(ValueError, match="NaN"):
        h.observe(math.nan)


def test_gauge_multiprocess_mode_is_validated(registry):
    with pytest.raises(ValueError, match="multiprocess_mode"):
        Gauge("m", "h", registry=registry, multiprocess_mode="average")


def test_namespace_subsystem_unit_build_the_name(registry):
    c = Counter("sent", "h", namespace="app", subsystem="net", unit="bytes", registry=registry)
    c.inc()
    assert total(rendered(registry), "app_net_sent_bytes_total") == 1


def test_timer_decorator_binds_as_a_method_and_keeps_attributes(registry):
    h = Histogram("h", "h", registry=registry)

    class Client:
        @h.time()
        def call(self, x):
            """Doc."""
            return x * 2

    assert Client().call(21) == 42
    assert Client.call(Client(), 1) == 2
    assert (Client.call.__name__, Client.call.__doc__) == ("call", "Doc.")
    assert Client.call.__wrapped__(None, 2) == 4

    from locust import task

    @task(3)
    @h.time()
    def weighted(user):
        return user

    @h.time()
    @task(2)
    def weighted_first(user):
        return user

    assert (weighted.locust_task_weight, weighted_first.locust_task_weight) == (3, 2)
    weighted(None)
    weighted_first(None)
    assert total(rendered(registry), "h_count") == 4


def test_overlapping_decorated_calls_each_have_their_own_timer(registry):
    g, h = Gauge("g", "g", registry=registry), Histogram("h", "h", registry=registry)

    @h.time()
    @g.track_inprogress()
    def depth(n):
        return total(rendered(registry), "g") if n == 0 else depth(n - 1)

    assert depth(2) == 3
    s = rendered(registry)
    assert (total(s, "g"), total(s, "h_count")) == (0, 3)


def test_remove_and_clear(registry):
    c = Counter("m", "h", ["a"], registry=registry)
    c.labels("x").inc()
    c.labels("y").inc()
    c.remove("x")
    assert total(rendered(registry), "m_total", a="x") == 0
    assert total(rendered(registry), "m_total", a="y") == 1
    c.clear()
    assert total(rendered(registry), "m_total") == 0
    with pytest.raises(ValueError, match="incorrect label count"):
        c.remove()
    unlabelled = Counter("plain", "h", registry=registry)
    with pytest.raises(ValueError, match="no label names"):
        unlabelled.remove()
    unlabelled.inc()
    assert total(rendered(registry), "plain_total") == 1


def test_counter_unit_goes_before_total_and_worker_is_reserved_in_all_mode(registry):
    Counter("sent_total", "h", namespace="unit", unit="bytes", registry=registry).inc()
    assert total(rendered(registry), "unit_sent_bytes_total") == 1
    with pytest.raises(ValueError, match="reserved"):
        Gauge("all_mode", "h", ["worker"], registry=registry, multiprocess_mode="all")
    Gauge("max_mode", "h", ["worker"], registry=registry, multiprocess_mode="max")
