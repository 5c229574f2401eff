//! The request listener Locust calls directly: one native call per event, no Python frame in between.

use std::borrow::Cow;
use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};

use super::metric::{parse_buckets, Counter, Gauge, Metric};
use crate::locust_metrics::{LocustMetrics, Request, DEFAULT_BUCKETS};
use crate::metrics::global;

/// Locust's metrics, and the callable to register on `events.request`.
#[pyclass(frozen, module = "locust_prometheus_exporter._native")]
pub struct RequestListener {
    metrics: Arc<LocustMetrics>,
}

/// A label from any object: `str` as it is, anything else through `str()`, failures as "".
fn text<'py>(value: Option<&Bound<'py, PyAny>>) -> Cow<'py, str> {
    let Some(v) = value else {
        return Cow::Borrowed("");
    };
    if let Ok(s) = v.cast::<PyString>() {
        return s.to_cow().map(|c| Cow::Owned(c.into_owned())).unwrap_or_default();
    }
    v.str()
        .ok()
        .and_then(|s| s.to_cow().ok().map(|c| Cow::Owned(c.into_owned())))
        .unwrap_or_default()
}

fn attr<'py>(obj: &Bound<'py, PyAny>, name: &Bound<'py, PyString>) -> Option<Bound<'py, PyAny>> {
    obj.getattr(name).ok().filter(|v| !v.is_none())
}

/// The HTTP status: "" without a response object, "0" when Locust got no HTTP response.
fn status(py: Python<'_>, response: Option<&Bound<PyAny>>) -> String {
    let Some(code) = response.and_then(|r| attr(r, intern!(py, "status_code"))) else {
        return String::new();
    };
    match code.extract::<i64>() {
        Ok(n) => n.to_string(),
        Err(_) => text(Some(&code)).into_owned(),
    }
}

/// Request body bytes: requests' `PreparedRequest.body` or FastHttpUser's `payload`,
/// else a numeric `Content-Length` header (streamed bodies). Headers are never counted.
fn request_body_len(py: Python<'_>, response: Option<&Bound<PyAny>>) -> f64 {
    let Some(req) = response.and_then(|r| attr(r, intern!(py, "request"))) else {
        return 0.0;
    };
    let body = attr(&req, intern!(py, "body")).or_else(|| attr(&req, intern!(py, "payload")));
    if let Some(body) = body {
        if let Ok(s) = body.cast::<PyString>() {
            return s.to_cow().map(|c| c.len() as f64).unwrap_or(0.0);
        }
        if body.is_instance_of::<PyBytes>() || body.is_instance_of::<PyByteArray>() {
            return body.len().map(|n| n as f64).unwrap_or(0.0);
        }
    }
    attr(&req, intern!(py, "headers"))
        .and_then(|h| h.call_method1(intern!(py, "get"), ("Content-Length",)).ok())
        .and_then(|v| text(Some(&v)).trim().parse::<u64>().ok())
        .map_or(0.0, |n| n as f64)
}

#[pymethods]
impl RequestListener {
    #[new]
    #[pyo3(signature = (buckets=None, per_worker=false))]
    fn new(buckets: Option<Vec<f64>>, per_worker: bool) -> PyResult<Self> {
        let bounds = parse_buckets(buckets, &DEFAULT_BUCKETS)?;
        Ok(RequestListener {
            metrics: Arc::new(LocustMetrics::new(global(), &bounds, per_worker)?),
        })
    }

    /// Records one `events.request` firing. Never raises: an exception here would make Locust exit with 2.
    #[pyo3(signature = (**kwargs))]
    fn __call__<'py>(&self, py: Python<'py>, kwargs: Option<&Bound<'py, PyDict>>) {
        let Some(kw) = kwargs else { return };
        let get = |key: &Bound<'py, PyString>| kw.get_item(key).ok().flatten().filter(|v| !v.is_none());
        let response = get(intern!(py, "response"));
        let exception = get(intern!(py, "exception"))
            .and_then(|e| e.get_type().name().ok())
            .map(|n| text(Some(n.as_any())).into_owned())
            .unwrap_or_default();
        let number = |key| get(key).and_then(|v| v.extract::<f64>().ok());
        let request = Request {
            method: &text(get(intern!(py, "request_type")).as_ref()),
            name: &text(get(intern!(py, "name")).as_ref()),
            status: &status(py, response.as_ref()),
            exception: &exception,
            response_time_ms: number(intern!(py, "response_time")),
            response_length: number(intern!(py, "response_length")).unwrap_or(0.0),
            request_length: request_body_len(py, response.as_ref()),
        };
        let _ = crate::errors::no_panic(|| self.metrics.record(&request));
    }

    /// Other buckets for `locust_request_duration_seconds` (from Locust's options, before the test).
    fn set_buckets(&self, buckets: Vec<f64>) -> PyResult<()> {
        let bounds = parse_buckets(Some(buckets), &DEFAULT_BUCKETS)?;
        Ok(self.metrics.set_buckets(global(), &bounds)?)
    }

    /// `locust_test_info{run_id,locustfile,host,target_users}`: set on the master (or only process).
    #[getter]
    fn test_info(&self) -> Gauge {
        Gauge {
            metric: Metric::new(self.metrics.test_info.clone()),
        }
    }

    /// `locust_users_total`: users spawned.
    #[getter]
    fn users_total(&self) -> Counter {
        Counter {
            metric: Metric::new(self.metrics.users_total.clone()),
        }
    }

    /// `locust_users_running`: the runner's user count.
    #[getter]
    fn users_running(&self) -> Gauge {
        Gauge {
            metric: Metric::new(self.metrics.users_running.clone()),
        }
    }

    /// `locust_users_waiting`: users in their wait_time.
    #[getter]
    fn users_waiting(&self) -> Gauge {
        Gauge {
            metric: Metric::new(self.metrics.users_waiting.clone()),
        }
    }

    /// `locust_workers{state}`: workers by state, set on the master.
    #[getter]
    fn workers(&self) -> Gauge {
        Gauge {
            metric: Metric::new(self.metrics.workers.clone()),
        }
    }
}
