"""The ``name=value,...`` lists of the options and variables: ``--prometheus-labels`` and the push headers
(``LOCUST_PROMETHEUS_<TARGET>_HEADERS``) are read alike."""

from __future__ import annotations

import pytest
from locust_prometheus_exporter import _options
from locust_prometheus_exporter._end_of_run import _credentials

VARIABLE = "LOCUST_PROMETHEUS_REMOTE_WRITE_HEADERS"


def headers(monkeypatch: pytest.MonkeyPatch, text: str) -> object:
    monkeypatch.setenv(VARIABLE, text)
    return _credentials("remote_write").get("headers")


def test_labels_and_headers_are_parsed_alike(monkeypatch):
    text = " env = staging,, X-Scope-OrgID=tenant=1 ,"
    pairs = [("env", "staging"), ("X-Scope-OrgID", "tenant=1")]
    assert _options.pairs(text, "--prometheus-labels") == headers(monkeypatch, text) == pairs
    assert headers(monkeypatch, " , ") is None, "no header given"


def test_a_part_without_equals_names_where_it_was_read(monkeypatch):
    with pytest.raises(ValueError, match=r"^--prometheus-labels: expected name=value, got 'env'$"):
        _options.pairs("a=1,env", "--prometheus-labels")
    # A header's text may be a secret: the error names the variable, not what it holds.
    with pytest.raises(ValueError, match=rf"^{VARIABLE}: expected Name=value, comma-separated$"):
        headers(monkeypatch, "X-Scope-OrgID")
