//! The Python handle on a pusher: a registry's metrics pushed to remote write or a Pushgateway.

use std::time::Duration;

use pyo3::prelude::*;

use super::registry::CollectorRegistry;
use crate::errors::{no_panic, ExporterError};
use crate::push::{Auth, Protocol, PushConfig, Pusher};

/// Pushes `registry`'s metrics from a native thread (`protocol`: `"remote_write"`, `"remote_write_classic"`
/// (without the native histograms) or `"pushgateway"`).
/// `ValueError` for a malformed URL or header, an unreadable CA file, or a bad interval.
#[pyclass(frozen, name = "Pusher", module = "locust_prometheus_exporter._native")]
pub struct PyPusher {
    inner: Pusher,
}

#[pymethods]
impl PyPusher {
    #[new]
    #[pyo3(signature = (registry, protocol, url, interval, instance, *, username=None, password=None, bearer_token=None, ca_file=None, headers=Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        registry: &Bound<'_, CollectorRegistry>,
        protocol: &str,
        url: String,
        interval: f64,
        instance: String,
        username: Option<String>,
        password: Option<String>,
        bearer_token: Option<String>,
        ca_file: Option<String>,
        headers: Vec<(String, String)>,
    ) -> PyResult<Self> {
        let protocol = match protocol {
            "remote_write" => Protocol::RemoteWrite { native: true },
            "remote_write_classic" => Protocol::RemoteWrite { native: false },
            "pushgateway" => Protocol::Pushgateway,
            other => return Err(ExporterError::InvalidPushConfig(format!("unknown push protocol {other:?}")).into()),
        };
        let interval = Duration::try_from_secs_f64(interval)
            .ok()
            .filter(|i| !i.is_zero())
            .ok_or_else(|| ExporterError::InvalidPushConfig(format!("push interval must be > 0 s, got {interval}")))?;
        let auth = match (username, password, bearer_token) {
            (None, None, None) => Auth::None,
            (None, None, Some(token)) => Auth::Bearer(token),
            (Some(username), password, None) => Auth::Basic {
                username,
                password: password.unwrap_or_default(),
            },
            _ => {
                return Err(ExporterError::InvalidPushConfig(
                    "give a username (and password) or a bearer token, not both".to_string(),
                )
                .into())
            }
        };
        let config = PushConfig {
            node: registry.get().inner.clone(),
            protocol,
            url,
            interval,
            auth,
            ca_file,
            instance,
            headers,
        };
        Ok(PyPusher {
            inner: no_panic(|| Pusher::start(config))?,
        })
    }

    /// Pushgateway grouping labels after `job` (such as `run_id`), for the pushes from now on.
    fn set_grouping(&self, grouping: Vec<(String, String)>) {
        self.inner.set_grouping(grouping);
    }

    /// Starts the final push (after the push under way, if any).
    fn request_final(&self) {
        self.inner.request_final();
    }

    /// Waits without the GIL until the final push is done or `timeout` seconds passed; whether it is done.
    fn wait_final(&self, py: Python<'_>, timeout: f64) -> bool {
        let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        py.detach(|| self.inner.wait_final(timeout))
    }

    /// Log lines from the pushing thread since the last call (one per kind of failure).
    fn take_messages(&self) -> Vec<String> {
        self.inner.take_messages()
    }

    /// `(pushes sent, attempts failed, samples dropped)`.
    fn stats(&self) -> (u64, u64, u64) {
        let s = self.inner.stats();
        (s.sent, s.failed, s.dropped_samples)
    }

    fn stop(&self) {
        self.inner.stop();
    }

    fn __str__(&self) -> String {
        self.inner.describe()
    }
}
