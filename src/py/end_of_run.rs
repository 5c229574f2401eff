//! Python handles on the end of a run: the final scrape's clock and wait.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::scrape_log::{from_nanos, scrape_log, to_nanos};

/// Now, on the clock of `wait_for_scrape` (nanoseconds, monotonic).
#[pyfunction]
pub fn scrape_mark() -> u64 {
    to_nanos(Instant::now())
}

/// `(scrapes started, mean seconds between their starts or None)` since the process started.
#[pyfunction]
pub fn scrapes_seen() -> (u64, Option<f64>) {
    let (count, interval) = scrape_log().seen();
    (count, interval.map(|i| i.as_secs_f64()))
}

/// Waits, without the GIL, until a full scrape of `/metrics` that started after `mark` has been
/// answered, or `timeout` seconds passed; returns whether one was.
#[pyfunction]
pub fn wait_for_scrape(py: Python<'_>, mark: u64, timeout: f64) -> bool {
    let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
    py.detach(|| scrape_log().wait_answered_after(from_nanos(mark), timeout))
}
