"""The Python API: prometheus_client-shaped metrics, every bad input, and the rendered exposition."""

from __future__ import annotations

import itertools
import math
import time

import pytest
from locust_prometheus_exporter import Counter, Gauge, Histogram, _native
from support.scrape import promtool_check, samples_of, total

_ids = itertools.count()
#: Seconds spent inside a timer.
HELD = 0.02


def unique(prefix: str = "m") -> str:
    """Metrics live in one process-wide registry: each test uses fresh names."""
    return f"{prefix}_{next(_ids)}"


def rendered() -> dict:
    """The whole registry in both formats: promtool-clean, and the same samples either way."""
    text = _native.render().decode()
    promtool_check(text)
    samples = samples_of(text)
    openmetrics = samples_of(_native.render(openmetrics=True).decode(), openmetrics=True)
    assert {k: repr(v) for k, v in samples.items()} == {k: repr(v) for k, v in openmetrics.items()}
    return samples


def test_counter_is_exposed_with_total_suffix_once():
    a, b = unique("c"), unique("c")
    Counter(a, "plain").inc()
    Counter(f"{b}_total", "suffixed").inc(2.5)
    s = rendered()
    assert total(s, f"{a}_total") == 1
    assert total(s, f"{b}_total") == 2.5
    assert not any(name.endswith("_total_total") for name, _ in s)


def test_labels_by_position_keyword_and_coercion():
    name = unique()
    c = Counter(name, "h", ["method", "code"])
    c.labels("GET", 200).inc()
    c.labels(code="200", method="GET").inc()
    c.labels(None, 1.5).inc()
    s = rendered()
    assert total(s, f"{name}_total", method="GET", code="200") == 2
    assert total(s, f"{name}_total", method="None", code="1.5") == 1


def test_distinct_label_values_never_share_a_series():
    name = unique()
    c = Counter(name, "h", ["a", "b"])
    c.labels("ab", "c").inc(1)
    c.labels("a", "bc").inc(10)
    s = rendered()
    assert total(s, f"{name}_total", a="ab", b="c") == 1
    assert total(s, f"{name}_total", a="a", b="bc") == 10


def test_escaping_round_trips_through_both_parsers():
    name = unique()
    value = 'back\\slash "quoted" new\nline # é \\n'
    Gauge(name, 'help with \\ and\nnewline and "quotes"', ["v"]).labels(value).set(3)
    s = rendered()
    assert total(s, name, v=value) == 3


def test_gauge_operations_and_special_values():
    name = unique("g")
    g = Gauge(name, "h")
    g.set(5)
    g.inc()
    g.dec(2.5)
    assert total(rendered(), name) == 3.5
    for v in (math.inf, -math.inf):
        g.set(v)
        assert total(rendered(), name) == v
    g.set(math.nan)
    assert math.isnan(total(rendered(), name))
    g.set_to_current_time()
    assert total(rendered(), name) > 1.7e9


def test_histogram_buckets_sum_and_count():
    name = unique("h")
    h = Histogram(name, "h", ["route"], buckets=[0.1, 1, float("inf")])
    child = h.labels("/x")
    for v in (0.05, 0.1, 0.5, 5):
        child.observe(v)
    s = rendered()
    assert total(s, f"{name}_bucket", route="/x", le="0.1") == 2
    assert total(s, f"{name}_bucket", route="/x", le="1.0") == 3
    assert total(s, f"{name}_bucket", route="/x", le="+Inf") == 4
    assert total(s, f"{name}_count", route="/x") == 4
    assert total(s, f"{name}_sum", route="/x") == pytest.approx(5.65)


def test_timers_and_inprogress_as_context_managers_and_decorators():
    h_name, g_name, t_name = unique("h"), unique("g"), unique("t")
    h = Histogram(h_name, "h")
    with h.time():
        time.sleep(HELD)
    g = Gauge(g_name, "g")

    @g.track_inprogress()
    def inside(x):
        return x, total(rendered(), g_name)

    assert inside(7) == (7, 1)
    timed = Gauge(t_name, "t")
    with timed.time():
        time.sleep(HELD)
    s = rendered()
    assert total(s, f"{h_name}_count") == 1
    # The timers measure the time spent inside: at least the sleep, and far less than a second.
    assert HELD <= total(s, f"{h_name}_sum") < 1
    assert total(s, g_name) == 0
    assert HELD <= total(s, t_name) < 1


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "é", "__reserved"])
def test_invalid_metric_names_raise_and_register_nothing(name):
    before = _native.render()
    with pytest.raises(ValueError, match="invalid metric name"):
        Counter(name, "h")
    assert _native.render() == before


@pytest.mark.parametrize("labels", [["1a"], ["a:b"], ["a-b"], ["__x"], ["a", "a"]])
def test_invalid_label_names_raise(labels):
    with pytest.raises(ValueError, match="label name"):
        Gauge(unique(), "h", labels)


def test_le_is_reserved_on_histograms_only():
    with pytest.raises(ValueError, match="reserved"):
        Histogram(unique(), "h", ["le"])
    Gauge(unique(), "h", ["le"])


def test_duplicates_and_derived_name_clashes_raise_and_keep_the_first():
    name = unique("dup")
    first = Counter(name, "h")
    for clash in (lambda: Counter(name, "h"), lambda: Gauge(f"{name}_total", "h"), lambda: Gauge(name, "h"),
                  lambda: Histogram(f"{name}_created", "h")):  # fmt: skip
        with pytest.raises(ValueError, match="duplicated timeseries"):
            clash()
    h = unique("hist")
    Histogram(h, "h")
    with pytest.raises(ValueError, match="duplicated"):
        Gauge(f"{h}_bucket", "h")
    first.inc()
    assert total(rendered(), f"{name}_total") == 1


def test_failed_constructor_leaves_the_name_free():
    name = unique()
    before = _native.render()
    with pytest.raises(ValueError):
        Counter(name, "h", ["bad-label"])
    assert _native.render() == before
    Counter(name, "h").inc()
    assert total(rendered(), f"{name}_total") == 1


@pytest.mark.parametrize("amount", [-1, math.nan, math.inf])
def test_counter_rejects_negative_nan_and_infinite_increments(amount):
    name = unique()
    c = Counter(name, "h")
    c.inc(2)
    with pytest.raises(ValueError, match="non-negative"):
        c.inc(amount)
    assert total(rendered(), f"{name}_total") == 2


@pytest.mark.parametrize("value", ["1", None, object()])
def test_non_numbers_raise_type_error(value):
    with pytest.raises(TypeError):
        Counter(unique(), "h").inc(value)
    with pytest.raises(TypeError):
        Gauge(unique(), "h").set(value)


def test_label_misuse_raises_value_error():
    c = Counter(unique(), "h", ["a"])
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
        Counter(unique(), "h").labels("x")


def test_label_value_whose_str_raises_propagates_and_records_nothing():
    class Bad:
        def __str__(self):
            raise TypeError("no str")

    name = unique()
    c = Counter(name, "h", ["a"])
    with pytest.raises(TypeError, match="no str"):
        c.labels(Bad())
    assert not [key for key in rendered() if key[0] == f"{name}_total"]


def test_label_value_whose_str_updates_the_same_metric_does_not_deadlock():
    name = unique()
    c = Counter(name, "h", ["a"])

    class Reentrant:
        def __str__(self):
            c.labels("inner").inc()
            return "outer"

    c.labels(Reentrant()).inc()
    s = rendered()
    assert total(s, f"{name}_total", a="inner") == 1
    assert total(s, f"{name}_total", a="outer") == 1


@pytest.mark.parametrize("buckets", [[1, 0.5], [1, 1], [math.nan], [], [math.inf]])
def test_bad_buckets_raise(buckets):
    with pytest.raises(ValueError, match="buckets"):
        Histogram(unique(), "h", buckets=buckets)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"native": True, "native_schema": 9}, "schema 9"),
        ({"native": True, "native_schema": -5}, "schema -5"),
        ({"native_schema": 2}, "needs native=True"),
    ],
)
def test_bad_native_options_raise_and_register_nothing(kwargs, error):
    name = unique()
    with pytest.raises(ValueError, match=error):
        Histogram(name, "h", **kwargs)
    Histogram(name, "h", native=True, native_schema=-4)


def test_native_histogram_keeps_the_classic_samples():
    name = unique()
    h = Histogram(name, "h", buckets=[1.0], native=True)
    h.observe(0.5)
    s = rendered()
    assert total(s, f"{name}_bucket", le="1.0") == total(s, f"{name}_count") == 1


def test_histogram_rejects_nan_observation():
    h = Histogram(unique(), "h")
    with pytest.raises(ValueError, match="NaN"):
        h.observe(math.nan)


def test_gauge_multiprocess_mode_is_validated():
    with pytest.raises(ValueError, match="multiprocess_mode"):
        Gauge(unique(), "h", multiprocess_mode="average")


def test_namespace_subsystem_unit_build_the_name():
    namespace = unique("app")
    c = Counter("sent", "h", namespace=namespace, subsystem="net", unit="bytes")
    c.inc()
    assert total(rendered(), f"{namespace}_net_sent_bytes_total") == 1


def test_timer_decorator_binds_as_a_method_and_keeps_attributes():
    name = unique("h")
    h = Histogram(name, "h")

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
    assert total(rendered(), f"{name}_count") == 4


def test_overlapping_decorated_calls_each_have_their_own_timer():
    g_name, h_name = unique("g"), unique("h")
    g, h = Gauge(g_name, "g"), Histogram(h_name, "h")

    @h.time()
    @g.track_inprogress()
    def depth(n):
        return total(rendered(), g_name) if n == 0 else depth(n - 1)

    assert depth(2) == 3
    s = rendered()
    assert (total(s, g_name), total(s, f"{h_name}_count")) == (0, 3)


def test_remove_and_clear():
    name = unique()
    c = Counter(name, "h", ["a"])
    c.labels("x").inc()
    c.labels("y").inc()
    c.remove("x")
    assert total(rendered(), f"{name}_total", a="x") == 0
    assert total(rendered(), f"{name}_total", a="y") == 1
    c.clear()
    assert total(rendered(), f"{name}_total") == 0
    with pytest.raises(ValueError, match="incorrect label count"):
        c.remove()
    plain = unique()
    unlabelled = Counter(plain, "h")
    with pytest.raises(ValueError, match="no label names"):
        unlabelled.remove()
    unlabelled.inc()
    assert total(rendered(), f"{plain}_total") == 1


def test_counter_unit_goes_before_total_and_worker_is_reserved_in_all_mode():
    namespace = unique("unit")
    Counter("sent_total", "h", namespace=namespace, unit="bytes").inc()
    assert total(rendered(), f"{namespace}_sent_bytes_total") == 1
    with pytest.raises(ValueError, match="reserved"):
        Gauge(unique(), "h", ["worker"], multiprocess_mode="all")
    Gauge(unique(), "h", ["worker"], multiprocess_mode="max")
