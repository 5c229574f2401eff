"""The native pusher's remote-write histogram modes, checked where it is made (no push is sent: the interval is an
hour and the pusher is stopped at once)."""

from __future__ import annotations

import pytest
from locust_prometheus_exporter import _native

URL = "http://127.0.0.1:9/api/v1/write"


@pytest.mark.parametrize("protocol", ["remote_write", "remote_write_native", "remote_write_classic"])
def test_each_mode_is_taken_and_nothing_is_lost_before_a_push(protocol):
    pusher = _native.Pusher(_native.CollectorRegistry(), protocol, URL, 3600, "h:1")
    try:
        assert pusher.stats() == (0, 0, 0, 0)
    finally:
        pusher.stop()


def test_an_unknown_mode_is_a_value_error():
    with pytest.raises(ValueError, match='unknown push protocol "remote_write_both"'):
        _native.Pusher(_native.CollectorRegistry(), "remote_write_both", URL, 3600, "h:1")
