//! The Python handle on the HTTP server, and on the log of its scrapes that the end of a run waits on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::prelude::*;

use super::registry::CollectorRegistry;
use crate::clock::{from_nanos, to_nanos};
use crate::errors::no_panic;
use crate::fork;
use crate::server::{Limits, LiveConfig, ScrapeLog, ServerHandle};

/// Bumped in a forked child, where the parent's server threads do not exist.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// A running `/metrics` server; bound when constructed.
#[pyclass(frozen, module = "locust_prometheus_exporter._native")]
pub struct Server {
    handle: Mutex<Option<ServerHandle>>,
    scrapes: Arc<ScrapeLog>,
    generation: u64,
    #[pyo3(get)]
    host: String,
    #[pyo3(get)]
    port: u16,
    /// Served over TLS (fixed when it started: a web config that drops TLS later is refused).
    #[pyo3(get)]
    tls: bool,
}

#[pymethods]
impl Server {
    /// Serves `registry`; `web_config`: an exporter-toolkit web-config file (TLS, basic auth), read now.
    #[new]
    #[pyo3(signature = (registry, host, port, web_config=None))]
    fn new(
        py: Python<'_>,
        registry: &Bound<'_, CollectorRegistry>,
        host: &str,
        port: u16,
        web_config: Option<PathBuf>,
    ) -> PyResult<Self> {
        let node = registry.get().inner.clone();
        let (handle, tls) = py.detach(|| {
            // Starting registers the server's counters in the registry: through the fork gate.
            let _pass = fork::enter();
            no_panic(|| {
                let web = web_config.as_deref().map(LiveConfig::load).transpose()?;
                let tls = web.as_ref().is_some_and(|w| w.tls());
                Ok((ServerHandle::start(node, host, port, Limits::DEFAULT, web)?, tls))
            })
        })?;
        let addr = handle.addr();
        Ok(Server {
            scrapes: handle.scrape_log(),
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

    /// Now, on the clock of `wait_for_scrape` (nanoseconds, monotonic).
    #[staticmethod]
    fn scrape_mark() -> u64 {
        to_nanos(Instant::now())
    }

    /// `(scrapes started, the scrape interval seen in seconds or None)`: the mean interval between
    /// scrapes of `/metrics`, or with a single scrape the time since it.
    fn scrapes_seen(&self) -> (u64, Option<f64>) {
        let (count, interval) = self.scrapes.seen();
        (count, interval.map(|i| i.as_secs_f64()))
    }

    /// Waits, without the GIL, until a full scrape of `/metrics` that started after `mark` has been
    /// answered, or `timeout` seconds passed; returns whether one was.
    fn wait_for_scrape(&self, py: Python<'_>, mark: u64, timeout: f64) -> bool {
        let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        py.detach(|| self.scrapes.wait_answered_after(from_nanos(mark), timeout))
    }
}

/// In a forked child: the parent's servers are not this process's to stop.
pub fn forget_parent_servers() {
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
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
