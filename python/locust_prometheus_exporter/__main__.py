"""``python -m locust_prometheus_exporter`` prints the path of the plugin locustfile (see ``plugin.py``)."""

from pathlib import Path

print(Path(__file__).with_name("plugin.py"))
