//! Python handles on the HTTP server and on the registry's distributed-mode operations.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::no_panic;
use crate::exposition::{scrape_registry, Format};
use crate::fork;
use crate::metrics::global;
use crate::report;
use std::path::PathBuf;

use crate::server::{Limits, ServerHandle, Web};

/// Bumped in a forked child, where the parent's server threads do not exist.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// A running `/metrics` server; bound when constructed.
#[pyclass(frozen, module = "locust_prometheus_exporter._native")]
pub struct Server {
    handle: Mutex<Option<ServerHandle>>,
    generation: u64,
    #[pyo3(get)]
    host: String,
    #[pyo3(get)]
    port: u16,
    /// Served over TLS (when it started: a changed web config may change it).
    #[pyo3(get)]
    tls: bool,
}

#[pymethods]
impl Server {
    /// `web_config`: an exporter-toolkit web-config file (TLS, basic auth), read now.
    #[new]
    #[pyo3(signature = (host, port, web_config=None))]
    fn new(py: Python<'_>, host: &str, port: u16, web_config: Option<PathBuf>) -> PyResult<Self> {
        let (handle, tls) = py.detach(|| {
            no_panic(|| {
                let web = web_config.as_deref().map(Web::load).transpose()?;
                let tls = web.as_ref().is_some_and(|w| w.current().tls.is_some());
                Ok((ServerHandle::start(host, port, Limits::DEFAULT, web)?, tls))
            })
        })?;
        let addr = handle.addr();
        Ok(Server {
            handle: Mutex::new(Some(handle)),
            generation: FORK_GENERATION.load(Ordering::SeqCst),
            host: addr.ip().to_string(),
            port: addr.port(),
            tls,
        })
    }

    /// Stops serving and frees the port. Idempotent.
    fn close(&self, py: Python<'_>) {
        let Some(handle) = self.handle.lock().take() else {
            return;
        };
        if self.generation == FORK_GENERATION.load(Ordering::SeqCst) {
            py.detach(|| handle.shutdown());
        } else {
            // Inherited by fork: its threads live only in the parent, so there is nothing to join.
            std::mem::forget(handle);
        }
    }

    #[getter]
    fn closed(&self) -> bool {
        self.handle.lock().is_none()
    }
}

impl Drop for Server {
    /// Dropped unclosed: the parent's server stops (its thread is not waited for). In a forked child
    /// the handle is left alone: signalling it would touch the parent's runtime, whose threads are gone.
    fn drop(&mut self) {
        if self.generation != FORK_GENERATION.load(Ordering::SeqCst) {
            std::mem::forget(self.handle.get_mut().take());
        }
    }
}

/// The exposition of every registered metric, as a scrape gets it but without the process metrics.
#[pyfunction]
#[pyo3(signature = (openmetrics=false, names=Vec::new()))]
pub fn render<'py>(py: Python<'py>, openmetrics: bool, names: Vec<String>) -> Bound<'py, PyBytes> {
    let format = if openmetrics { Format::OpenMetrics } else { Format::Text };
    let text = py.detach(|| {
        let _pass = fork::enter();
        scrape_registry(global(), format, &names)
    });
    PyBytes::new(py, text.as_bytes())
}

/// On a worker: the series changed since the last call, encoded for Locust's report.
#[pyfunction]
pub fn take_report(py: Python<'_>) -> Bound<'_, PyBytes> {
    let bytes = py.detach(|| {
        let _pass = fork::enter();
        report::encode(&global().changes())
    });
    PyBytes::new(py, &bytes)
}

/// On the master: takes one worker's report.
#[pyfunction]
pub fn apply_report(py: Python<'_>, client_id: &str, data: &[u8]) -> PyResult<()> {
    let families = report::decode(data)?;
    Ok(py.detach(|| {
        let _pass = fork::enter();
        global().apply_report(client_id, families)
    })?)
}

/// On the master: the workers Locust has not marked missing.
#[pyfunction]
pub fn set_live_workers(client_ids: Vec<String>) {
    global().set_live_workers(&client_ids);
}

/// Labels added to every sample (`ValueError` if one clashes with a metric's label names).
#[pyfunction]
pub fn set_const_labels(labels: Vec<(String, String)>) -> PyResult<()> {
    Ok(global().set_const_labels(labels)?)
}

/// Before a fork: waits until no thread of ours is inside the registry (see `fork`).
#[pyfunction]
pub fn before_fork(py: Python<'_>) {
    py.detach(fork::prepare);
}

#[pyfunction]
pub fn after_fork_in_parent() {
    fork::resume();
}

/// In a forked child: zero every value and forget the parent's server.
#[pyfunction]
pub fn after_fork_in_child() {
    fork::resume();
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
    global().reset_after_fork();
}
