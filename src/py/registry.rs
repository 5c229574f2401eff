//! `CollectorRegistry`: a set of metrics to serve, as in prometheus_client, and the process's default one.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;

use crate::distributed::Node;
use crate::errors::{no_panic, Result};
use crate::exposition::{registry_text, Format};
use crate::fork;

/// Metrics registered together and served together. `REGISTRY` is the process's default, used by
/// every metric and exporter made without `registry=`.
#[pyclass(frozen, weakref, module = "locust_prometheus_exporter._native")]
pub struct CollectorRegistry {
    pub(crate) inner: Arc<Node>,
}

/// Every registry of the process, so that a forked child starts each from zero (see `reset_all_after_fork`).
/// Taken only inside the fork gate, so that no fork finds it locked.
static LIVE: Mutex<Vec<Weak<Node>>> = Mutex::new(Vec::new());

static DEFAULT: PyOnceLock<Py<CollectorRegistry>> = PyOnceLock::new();

/// The default registry, `REGISTRY` in Python.
pub fn default_registry(py: Python<'_>) -> PyResult<&Py<CollectorRegistry>> {
    DEFAULT.get_or_try_init(py, || Py::new(py, CollectorRegistry::new(py)))
}

/// The registry a `registry=` argument names, the default one when it is `None`.
pub fn node_or_default(py: Python<'_>, registry: Option<&Bound<'_, CollectorRegistry>>) -> PyResult<Arc<Node>> {
    match registry {
        Some(r) => Ok(r.get().inner.clone()),
        None => Ok(default_registry(py)?.get().inner.clone()),
    }
}

/// In a forked child: every registry starts from zero, keeping its metrics and the handles Python holds,
/// so that what the parent recorded is not reported twice.
pub fn reset_all_after_fork() {
    let live: Vec<Arc<Node>> = LIVE.lock().iter().filter_map(Weak::upgrade).collect();
    live.iter().for_each(|r| r.reset_after_fork());
}

/// Work on a registry without the GIL (renders and reports take milliseconds), through the fork gate, and
/// with a panic turned into an error rather than a `BaseException` in Python.
fn off_the_gil<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    py.detach(|| {
        let _pass = fork::enter();
        no_panic(f)
    })
}

#[pymethods]
impl CollectorRegistry {
    #[new]
    fn new(py: Python<'_>) -> Self {
        let inner = Arc::new(Node::default());
        // Waiting at the fork gate without the GIL: the thread that forks needs it back to fork.
        py.detach(|| {
            let _pass = fork::enter();
            let mut live = LIVE.lock();
            live.retain(|r| r.strong_count() > 0);
            live.push(Arc::downgrade(&inner));
        });
        CollectorRegistry { inner }
    }

    /// The exposition of every metric of the registry, as a scrape gets it but without the process metrics;
    /// `names` keeps only the metrics with one of these sample names.
    #[pyo3(signature = (openmetrics=false, names=Vec::new()))]
    fn render<'py>(&self, py: Python<'py>, openmetrics: bool, names: Vec<String>) -> PyResult<Bound<'py, PyBytes>> {
        let format = if openmetrics { Format::OpenMetrics } else { Format::Text };
        let text = off_the_gil(py, || Ok(registry_text(&self.inner, format, &names)))?;
        Ok(PyBytes::new(py, text.as_bytes()))
    }

    /// On a worker: the series changed since the last call, encoded for Locust's report to the master.
    fn take_report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = off_the_gil(py, || Ok(self.inner.take_report()))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// On the master: merges one worker's report (refused whole if it does not parse, or is of a format
    /// version this build does not read). Returns the lines to log: each kind of problem once per worker.
    fn apply_report(&self, py: Python<'_>, client_id: &str, data: &[u8]) -> PyResult<Vec<String>> {
        Ok(off_the_gil(py, || Ok(self.inner.apply_report(client_id, data).1))?)
    }

    /// On the master: the workers Locust has not marked missing, and every worker it lists; those it no longer
    /// lists are forgotten after a grace period (none, without `listed`).
    #[pyo3(signature = (live, listed=None))]
    fn set_live_workers(&self, py: Python<'_>, live: Vec<String>, listed: Option<Vec<String>>) -> PyResult<()> {
        Ok(off_the_gil(py, || {
            self.inner.set_workers(&live, listed.as_deref());
            Ok(())
        })?)
    }

    /// Labels added to every sample (`ValueError` if one clashes with a metric's label names).
    fn set_const_labels(&self, py: Python<'_>, labels: Vec<(String, String)>) -> PyResult<()> {
        Ok(off_the_gil(py, || self.inner.registry.set_const_labels(labels))?)
    }

    fn __repr__(&self) -> String {
        format!(
            "<CollectorRegistry of {} metrics>",
            self.inner.registry.families().len()
        )
    }
}
