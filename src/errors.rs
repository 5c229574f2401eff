//! The one error type of the core and its one mapping to Python exceptions.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("invalid metric name {0:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]* and not start with '__'")]
    InvalidMetricName(String),
    #[error("invalid label name {0:?}: must match [a-zA-Z_][a-zA-Z0-9_]* and not start with '__'")]
    InvalidLabelName(String),
    #[error("label name {0:?} is reserved here")]
    ReservedLabelName(String),
    #[error("duplicate label name {0:?}")]
    DuplicateLabelName(String),
    #[error("constant label {label:?} is also a label of {metric}")]
    ConstLabelClash { label: String, metric: String },
    #[error("duplicated timeseries: {0:?} is already registered")]
    Duplicate(String),
    #[error("invalid buckets: {0}")]
    InvalidBuckets(String),
    #[error("no label names were set when constructing {0}")]
    NoLabelNames(String),
    #[error("incorrect label count: expected {expected}, got {got}")]
    LabelCount { expected: usize, got: usize },
    #[error("incorrect label names: expected {expected:?}, got {got:?}")]
    LabelNames { expected: Vec<String>, got: Vec<String> },
    #[error("can't pass both *args and **kwargs to labels()")]
    LabelArgsAndKwargs,
    #[error("labels() was already applied to this metric")]
    LabelsApplied,
    #[error("{0} is missing label values: call labels() first")]
    MissingLabelValues(String),
    #[error("counters can only be incremented by non-negative finite amounts, got {0}")]
    NegativeIncrement(f64),
    #[error("cannot observe NaN")]
    ObserveNaN,
    #[error("native_schema needs native=True")]
    SchemaWithoutNative,
    #[error("{0}")]
    InvalidValue(String),
    #[error("{metric} has max_series={max} series: a new one is not recorded")]
    TooManySeries { metric: String, max: usize },
    #[error("invalid worker report: {0}")]
    InvalidReport(&'static str),
    #[error(
        "its format version is {got}; this master (locust-prometheus-exporter {}, format {writes}) reads \
         formats {reads} to {writes} and later ones",
        env!("CARGO_PKG_VERSION")
    )]
    ReportVersion { got: u8, reads: u8, writes: u8 },
    #[error("metric name {0:?} is reserved for the exporter's own metrics (process_* and the locust_* built-ins)")]
    ReservedName(String),
    #[error("cannot listen on {addr}: {source}; set --prometheus-port or --prometheus-host")]
    Bind { addr: String, source: std::io::Error },
    #[error("{0}")]
    InvalidPushConfig(String),
    /// `tls_material`: the certificate, key or client CA is what is wrong (no handshake can use it).
    #[error("web config {path}: {problem}")]
    WebConfig {
        path: String,
        problem: String,
        tls_material: bool,
    },
    #[error("web config {path}: {what}: {source}")]
    WebConfigFile {
        path: String,
        what: String,
        source: std::io::Error,
        tls_material: bool,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, ExporterError>;

impl From<ExporterError> for PyErr {
    fn from(err: ExporterError) -> PyErr {
        match err {
            ExporterError::Bind { ref source, .. } | ExporterError::WebConfigFile { ref source, .. } => {
                PyOSError::new_err((source.raw_os_error().unwrap_or(0), err.to_string()))
            }
            ExporterError::Internal(_) => PyRuntimeError::new_err(err.to_string()),
            _ => PyValueError::new_err(err.to_string()),
        }
    }
}

/// Runs `f`, turning a panic into `ExporterError::Internal`: a panic crossing into Python
/// becomes a `BaseException` that Locust's `except Exception` cannot catch.
pub fn no_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        Err(ExporterError::Internal(msg))
    })
}
