//! The `locust_prometheus_exporter._native` extension module: registration only.

mod clock;
mod distributed;
mod errors;
mod exposition;
mod fork;
mod locust;
mod log_once;
mod metrics;
mod push;
mod py;
mod server;
#[cfg(test)]
mod test_rng;

// The GIL is kept on free-threaded builds: a Python thread inside a metric call holds registry locks, and
// only the GIL keeps such threads out while another one forks (native threads pass the fork gate instead).
#[pyo3::pymodule(gil_used = true)]
mod _native {
    #[pymodule_export]
    use crate::py::fork::{after_fork_in_child, after_fork_in_parent, before_fork};
    #[pymodule_export]
    use crate::py::listener::{bucket_bounds, RequestListener};
    #[pymodule_export]
    use crate::py::metric::{Counter, Gauge, Histogram};
    #[pymodule_export]
    use crate::py::push::PyPusher;
    #[pymodule_export]
    use crate::py::registry::CollectorRegistry;
    #[pymodule_export]
    use crate::py::server::Server;
    #[pymodule_export]
    use crate::py::timer::{Timed, Timer};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add(
            "REGISTRY",
            crate::py::registry::default_registry(m.py())?.clone_ref(m.py()),
        )?;
        m.add("OVERFLOW_NAME", crate::metrics::OVERFLOW)?;
        m.add("DEFAULT_MAX_NAMES", crate::locust::requests::DEFAULT_MAX_NAMES)
    }
}
