//! The `locust_prometheus_exporter._native` extension module: registration only.

mod errors;
mod exposition;
mod fork;
mod locust_metrics;
mod metrics;
mod process;
mod protobuf_exposition;
mod push;
mod py;
mod report;
mod scrape_log;
mod server;
mod web_config;

#[pyo3::pymodule(gil_used = false)]
mod _native {
    #[pymodule_export]
    use crate::py::end_of_run::{scrape_mark, scrapes_seen, wait_for_scrape, PyPusher};
    #[pymodule_export]
    use crate::py::listener::RequestListener;
    #[pymodule_export]
    use crate::py::metric::{Counter, Gauge, Histogram, Timed, Timer};
    #[pymodule_export]
    use crate::py::server::{
        after_fork_in_child, after_fork_in_parent, apply_report, before_fork, render, set_const_labels,
        set_live_workers, take_report, Server,
    };

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("OVERFLOW_NAME", crate::metrics::OVERFLOW)
    }
}
