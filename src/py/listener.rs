//! The request listener Locust calls directly: one native call per event, no Python frame in between.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};

use super::metric::{Counter, Gauge, Metric};
use super::registry::CollectorRegistry;
use crate::distributed::Node;
use crate::errors::no_panic;
use crate::locust::requests::{LocustMetrics, Request};
use crate::metrics::{self, parse_buckets, Family};

/// Locust's metrics in one registry, and the callable to register on `events.request`.
#[pyclass(frozen, module = "locust_prometheus_exporter._native")]
pub struct RequestListener {
    node: Arc<Node>,
    metrics: Arc<LocustMetrics>,
}

/// A label from any object: `str` borrowed as it is, anything else through `str()`, failures as "".
fn text<'a>(value: Option<&'a Bound<'_, PyAny>>) -> Cow<'a, str> {
    let Some(v) = value else {
        return Cow::Borrowed("");
    };
    match v.cast::<PyString>() {
        Ok(s) => s.to_str().map(Cow::Borrowed).unwrap_or_default(),
        Err(_) => v
            .str()
            .ok()
            .and_then(|s| s.to_str().ok().map(|t| Cow::Owned(t.to_owned())))
            .unwrap_or_default(),
    }
}

fn attr<'py>(obj: &Bound<'py, PyAny>, name: &Bound<'py, PyString>) -> Option<Bound<'py, PyAny>> {
    obj.getattr(name).ok().filter(|v| !v.is_none())
}

/// "0" to "599", made once: the common statuses cost no allocation per event.
static STATUS_CODES: LazyLock<Vec<String>> = LazyLock::new(|| (0..600).map(|n| n.to_string()).collect());

/// The HTTP status: "" without a response object, "0" when Locust got no HTTP response.
fn status<'a>(py: Python<'_>, response: Option<&Bound<'_, PyAny>>) -> Cow<'a, str> {
    let Some(code) = response.and_then(|r| attr(r, intern!(py, "status_code"))) else {
        return Cow::Borrowed("");
    };
    match code.extract::<i64>() {
        Ok(n) => match usize::try_from(n).ok().and_then(|i| STATUS_CODES.get(i)) {
            Some(s) => Cow::Borrowed(s.as_str()),
            None => Cow::Owned(n.to_string()),
        },
        Err(_) => Cow::Owned(text(Some(&code)).into_owned()),
    }
}

/// Request body bytes: `response.request.body` (requests' `PreparedRequest`; FastHttpUser's request
/// has it too), else a `payload`; a numeric `Content-Length` header for streamed bodies.
/// Headers are never counted. A `body` of None (a GET) ends the search without raising anything.
fn request_body_len(py: Python<'_>, response: Option<&Bound<PyAny>>) -> f64 {
    let Some(req) = response.and_then(|r| attr(r, intern!(py, "request"))) else {
        return 0.0;
    };
    let body = match req.getattr(intern!(py, "body")) {
        Ok(body) => body,
        Err(_) => match attr(&req, intern!(py, "payload")) {
            Some(payload) => payload,
            None => return 0.0,
        },
    };
    if body.is_none() {
        return 0.0;
    }
    if let Ok(s) = body.cast::<PyString>() {
        return s.to_str().map(|t| t.len() as f64).unwrap_or(0.0);
    }
    if body.is_instance_of::<PyBytes>() || body.is_instance_of::<PyByteArray>() {
        return body.len().map(|n| n as f64).unwrap_or(0.0);
    }
    attr(&req, intern!(py, "headers"))
        .and_then(|h| h.call_method1(intern!(py, "get"), ("Content-Length",)).ok())
        .and_then(|v| text(Some(&v)).trim().parse::<u64>().ok())
        .map_or(0.0, |n| n as f64)
}

fn number(value: Option<&Bound<'_, PyAny>>) -> Option<f64> {
    value.and_then(|v| v.extract::<f64>().ok())
}

impl RequestListener {
    /// A Python handle on one of Locust's gauges, for the runner-derived values set from Python.
    fn gauge(&self, family: &Arc<Family<metrics::Gauge>>) -> Gauge {
        Gauge {
            metric: Metric::new(self.node.clone(), family.clone()),
        }
    }
}

/// Histogram bounds as every histogram takes them: checked, the default ones if `None`, a trailing `+Inf`
/// dropped. Python compares two exporters' `buckets` in this form.
#[pyfunction]
#[pyo3(signature = (buckets=None))]
pub fn bucket_bounds(buckets: Option<Vec<f64>>) -> PyResult<Vec<f64>> {
    Ok(parse_buckets(buckets)?)
}

#[pymethods]
impl RequestListener {
    /// Registers Locust's metrics in `registry` (or finds them there, registered alike).
    #[new]
    #[pyo3(signature = (registry, buckets=None, per_worker=false))]
    fn new(registry: &Bound<'_, CollectorRegistry>, buckets: Option<Vec<f64>>, per_worker: bool) -> PyResult<Self> {
        let node = registry.get().inner.clone();
        let bounds = parse_buckets(buckets)?;
        Ok(RequestListener {
            metrics: Arc::new(no_panic(|| LocustMetrics::new(&node.registry, &bounds, per_worker))?),
            node,
        })
    }

    /// Records one `events.request` firing. Never raises: an exception here would make Locust exit with 2.
    ///
    /// Locust's keywords are named so that no kwargs dict is built for them; others are accepted and ignored.
    #[pyo3(signature = (*, request_type=None, name=None, response_time=None, response_length=None,
                        response=None, exception=None, context=None, start_time=None, url=None, **_other))]
    #[allow(clippy::too_many_arguments)]
    fn __call__(
        &self,
        py: Python<'_>,
        request_type: Option<&Bound<'_, PyAny>>,
        name: Option<&Bound<'_, PyAny>>,
        response_time: Option<&Bound<'_, PyAny>>,
        response_length: Option<&Bound<'_, PyAny>>,
        response: Option<&Bound<'_, PyAny>>,
        exception: Option<&Bound<'_, PyAny>>,
        context: Option<&Bound<'_, PyAny>>,
        start_time: Option<&Bound<'_, PyAny>>,
        url: Option<&Bound<'_, PyAny>>,
        _other: Option<&Bound<'_, PyDict>>,
    ) {
        let _ = (context, start_time, url);
        let exception_type = exception.and_then(|e| e.get_type().name().ok());
        let request = Request {
            method: &text(request_type),
            name: &text(name),
            status: &status(py, response),
            exception: &text(exception_type.as_ref().map(|n| n.as_any())),
            response_time_ms: number(response_time),
            response_length: number(response_length).unwrap_or(0.0),
            request_length: request_body_len(py, response),
        };
        let _ = no_panic(|| self.metrics.record(&request));
    }

    /// Other buckets for `locust_request_duration_seconds` (from Locust's options, before the test).
    fn set_buckets(&self, buckets: Vec<f64>) -> PyResult<()> {
        let bounds = parse_buckets(Some(buckets))?;
        Ok(no_panic(|| self.metrics.set_buckets(&self.node.registry, &bounds))?)
    }

    /// At most `max` distinct request names (0: no cap); new ones past it go under `name="<other>"`.
    fn set_max_names(&self, max: usize) {
        self.metrics.name_cap.set_max(max);
    }

    /// Whether a request name was recorded under the overflow name in this process.
    #[getter]
    fn names_capped(&self) -> bool {
        self.metrics.name_cap.reached()
    }

    /// `locust_test_info{run_id,locustfile,host,target_users}`: set on the master (or only process).
    #[getter]
    fn test_info(&self) -> Gauge {
        self.gauge(&self.metrics.test_info)
    }

    /// `locust_users_total`: users spawned.
    #[getter]
    fn users_total(&self) -> Counter {
        Counter {
            metric: Metric::new(self.node.clone(), self.metrics.users_total.clone()),
        }
    }

    /// `locust_users_running`: the runner's user count.
    #[getter]
    fn users_running(&self) -> Gauge {
        self.gauge(&self.metrics.users_running)
    }

    /// `locust_users_waiting`: users in their wait_time.
    #[getter]
    fn users_waiting(&self) -> Gauge {
        self.gauge(&self.metrics.users_waiting)
    }

    /// `locust_cpu_usage_percent{worker}`: Locust's CPU measure of each load-generating process.
    #[getter]
    fn cpu_usage(&self) -> Gauge {
        self.gauge(&self.metrics.cpu_usage)
    }

    /// `locust_memory_usage_bytes{worker}`: Locust's memory measure of each load-generating process.
    #[getter]
    fn memory_usage(&self) -> Gauge {
        self.gauge(&self.metrics.memory_usage)
    }

    /// `locust_workers{state}`: workers by state, set on the master.
    #[getter]
    fn workers(&self) -> Gauge {
        self.gauge(&self.metrics.workers)
    }
}
