//! `Counter`, `Gauge` and `Histogram` as prometheus_client users know them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::registry::{chosen, CollectorRegistry};
use crate::errors::ExporterError;
use crate::metrics::{check_buckets, now, Cell, Desc, Family, GaugeMode, Kind, NativeConfig, Registry, Scalar, Series};

/// Series a custom metric keeps at most, unless told otherwise (`max_series=`).
const DEFAULT_MAX_SERIES: usize = 10_000;

/// prometheus_client's default histogram buckets (seconds).
const DEFAULT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A family and, once labels are bound (or when it has none), one of its series.
#[derive(Clone)]
pub struct Metric {
    /// Where the family is registered (where a series past `max_series` is counted).
    registry: Arc<Registry>,
    family: Arc<Family>,
    series: Option<Arc<Series>>,
}

/// `namespace_subsystem_name_unit`, the way prometheus_client builds a full name; a counter's
/// `_total` is dropped first (it is added back on output), so `x_total` with unit `bytes` is `x_bytes`.
fn full_name(name: &str, namespace: &str, subsystem: &str, unit: &str, kind: &Kind) -> String {
    let name = match kind {
        Kind::Counter => name.strip_suffix("_total").filter(|n| !n.is_empty()).unwrap_or(name),
        _ => name,
    };
    let mut parts: Vec<&str> = [namespace, subsystem, name]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    let suffix = format!("_{unit}");
    if !unit.is_empty() && !name.ends_with(&suffix) {
        parts.push(unit);
    }
    parts.join("_")
}

impl Metric {
    pub fn new(registry: Arc<Registry>, family: Arc<Family>) -> Self {
        let series = family
            .desc
            .label_names
            .is_empty()
            .then(|| family.child::<&str>(&[]).ok())
            .flatten();
        Metric {
            registry,
            family,
            series,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        registry: Arc<Registry>,
        name: &str,
        documentation: &str,
        labelnames: Vec<String>,
        namespace: &str,
        subsystem: &str,
        unit: &str,
        kind: Kind,
        max_series: usize,
        native: Option<NativeConfig>,
    ) -> PyResult<Self> {
        let desc = Desc::new(
            &full_name(name, namespace, subsystem, unit, &kind),
            documentation,
            kind,
            labelnames,
        )?;
        let desc = match native {
            Some(config) => desc.with_native(config),
            None => desc,
        };
        let family = registry.register(desc)?;
        family.set_max_series(max_series);
        Ok(Metric::new(registry, family))
    }

    /// A series past `max_series`: recorded into nothing, counted, logged once. Counting and logging
    /// are best effort: the user's task that called labels() runs on whatever happens.
    fn dropped(&self, py: Python<'_>, err: ExporterError) -> Arc<Series> {
        let name = &self.family.desc.name;
        let counted = Desc::new(
            "locust_exporter_series_dropped",
            "labels() calls past a custom metric's max_series, whose values are not recorded",
            Kind::Counter,
            vec!["metric".into()],
        )
        .and_then(|desc| self.registry.get_or_register(desc))
        .and_then(|family| family.child(&[name]));
        if let Ok(Cell::Scalar(s)) = counted.as_deref().map(|series| &series.cell) {
            s.add(1.0);
        }
        if !self.family.limit_logged.swap(true, Ordering::Relaxed) {
            let _ = py
                .import("logging")
                .and_then(|m| m.call_method1("getLogger", ("locust_prometheus_exporter",)))
                .and_then(|l| l.call_method1("warning", (format!("locust-prometheus-exporter: {err} (logged once)"),)));
        }
        self.family.detached()
    }

    /// Label values from `*args` or `**kwargs`, turned into strings before any lock is taken.
    fn labels(&self, args: &Bound<PyTuple>, kwargs: Option<&Bound<PyDict>>) -> PyResult<Self> {
        let names = &self.family.desc.label_names;
        if names.is_empty() {
            return Err(PyValueError::new_err(format!(
                "no label names were set when constructing {}",
                self.family.desc.name
            )));
        }
        if self.series.is_some() {
            return Err(PyValueError::new_err("labels() was already applied to this metric"));
        }
        let kwargs = kwargs.filter(|k| !k.is_empty());
        let values: Vec<String> = match kwargs {
            Some(_) if !args.is_empty() => {
                return Err(PyValueError::new_err("can't pass both *args and **kwargs to labels()"));
            }
            Some(kw) => {
                let given: Vec<String> = kw
                    .keys()
                    .iter()
                    .map(|k| k.str().map(|s| s.to_string()))
                    .collect::<PyResult<_>>()?;
                let mut sorted_given = given.clone();
                sorted_given.sort();
                let mut sorted_names = names.clone();
                sorted_names.sort();
                if sorted_given != sorted_names {
                    return Err(PyValueError::new_err(format!(
                        "incorrect label names: expected {names:?}, got {given:?}"
                    )));
                }
                names
                    .iter()
                    .map(|n| {
                        kw.get_item(n)?
                            .map_or(Ok(String::new()), |v| v.str().map(|s| s.to_string()))
                    })
                    .collect::<PyResult<_>>()?
            }
            None => Self::label_values(args)?,
        };
        let series = match self.family.child(&values) {
            Err(err @ ExporterError::TooManySeries { .. }) => self.dropped(args.py(), err),
            other => other?,
        };
        Ok(Metric {
            series: Some(series),
            ..self.clone()
        })
    }

    fn label_values(args: &Bound<PyTuple>) -> PyResult<Vec<String>> {
        args.iter().map(|v| v.str().map(|s| s.to_string())).collect()
    }

    /// prometheus_client's `remove(*labelvalues)`: forgets one child, in this process.
    fn remove(&self, args: &Bound<PyTuple>) -> PyResult<()> {
        self.family.remove(&Self::label_values(args)?)?;
        Ok(())
    }

    fn series(&self) -> PyResult<&Arc<Series>> {
        self.series.as_ref().ok_or_else(|| {
            PyValueError::new_err(format!(
                "{} is missing label values: call labels() first",
                self.family.desc.name
            ))
        })
    }

    fn scalar(&self) -> PyResult<&Scalar> {
        match &self.series()?.cell {
            Cell::Scalar(s) => Ok(s),
            Cell::Histogram(_) => Err(PyValueError::new_err("not a counter or gauge")),
        }
    }

    fn observe(&self, amount: f64) -> PyResult<()> {
        if amount.is_nan() {
            return Err(PyValueError::new_err("cannot observe NaN"));
        }
        match &self.series()?.cell {
            Cell::Histogram(h) => {
                h.observe(amount);
                Ok(())
            }
            Cell::Scalar(_) => Err(PyValueError::new_err("not a histogram")),
        }
    }
}

/// What a `Timer` does with the elapsed time (or with entering and leaving, for in-progress gauges).
#[derive(Clone, Copy)]
enum TimerAction {
    Observe,
    SetGauge,
    InProgress,
}

/// Context manager and decorator returned by `time()` and `track_inprogress()`.
#[pyclass(frozen, module = "locust_prometheus_exporter._native")]
pub struct Timer {
    metric: Metric,
    action: TimerAction,
    started: Mutex<Vec<Instant>>,
}

impl Timer {
    fn enter(&self) -> PyResult<()> {
        if let TimerAction::InProgress = self.action {
            self.metric.scalar()?.add_stamped(1.0);
        }
        self.started.lock().push(Instant::now());
        Ok(())
    }

    fn exit(&self) -> PyResult<()> {
        let Some(start) = self.started.lock().pop() else {
            return Ok(());
        };
        let elapsed = start.elapsed().as_secs_f64();
        match self.action {
            TimerAction::Observe => self.metric.observe(elapsed),
            TimerAction::SetGauge => self.metric.scalar().map(|s| s.set(elapsed)),
            TimerAction::InProgress => self.metric.scalar().map(|s| s.add_stamped(-1.0)),
        }
    }
}

#[pymethods]
impl Timer {
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().enter()?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<PyTuple>) -> PyResult<bool> {
        self.exit()?;
        Ok(false)
    }

    /// Used as a decorator: times (or tracks) every call of `func`, each with a timer of its own.
    /// The wrapper is a Python function (see `_decorate.py`), so it binds as a method and keeps
    /// `func`'s name and attributes (Locust's `@task` weight among them).
    fn __call__<'py>(slf: &Bound<'py, Self>, func: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let timed = py.import("locust_prometheus_exporter._decorate")?.getattr("timed")?;
        timed.call1((func, slf.getattr("fresh")?))
    }

    /// A new timer for the same metric and action.
    fn fresh(&self) -> Timer {
        Timer {
            metric: self.metric.clone(),
            action: self.action,
            started: Mutex::new(Vec::new()),
        }
    }
}

fn timer(metric: &Metric, action: TimerAction) -> PyResult<Timer> {
    metric.series()?;
    Ok(Timer {
        metric: metric.clone(),
        action,
        started: Mutex::new(Vec::new()),
    })
}

/// The `#[pymethods]` of a metric class: the methods all three share, then its own.
macro_rules! metric_methods {
    ($class:ident, $($own:tt)*) => {
        #[pymethods]
        impl $class {
            /// The child for these label values (converted with `str()`).
            #[pyo3(signature = (*args, **kwargs))]
            fn labels(&self, args: &Bound<PyTuple>, kwargs: Option<&Bound<PyDict>>) -> PyResult<Self> {
                Ok($class { metric: self.metric.labels(args, kwargs)? })
            }

            /// Forgets the child with these label values (in this process only).
            #[pyo3(signature = (*labelvalues))]
            fn remove(&self, labelvalues: &Bound<PyTuple>) -> PyResult<()> {
                self.metric.remove(labelvalues)
            }

            /// Forgets every child (in this process only).
            fn clear(&self) {
                self.metric.family.clear();
            }

            $($own)*
        }
    };
}

/// A monotonically increasing value, exposed as `<name>_total`.
#[pyclass(frozen, module = "locust_prometheus_exporter._native")]
pub struct Counter {
    pub(crate) metric: Metric,
}

metric_methods! {
    Counter,
    #[new]
    #[pyo3(signature = (name, documentation, labelnames=Vec::new(), namespace="", subsystem="", unit="", registry=None, *, max_series=DEFAULT_MAX_SERIES))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &str,
        documentation: &str,
        labelnames: Vec<String>,
        namespace: &str,
        subsystem: &str,
        unit: &str,
        registry: Option<&Bound<'_, CollectorRegistry>>,
        max_series: usize,
    ) -> PyResult<Self> {
        Ok(Counter {
            metric: Metric::register(
                chosen(py, registry)?,
                name,
                documentation,
                labelnames,
                namespace,
                subsystem,
                unit,
                Kind::Counter,
                max_series,
                None,
            )?,
        })
    }

    #[pyo3(signature = (amount=1.0))]
    fn inc(&self, amount: f64) -> PyResult<()> {
        if !(amount >= 0.0 && amount.is_finite()) {
            return Err(PyValueError::new_err(format!(
                "counters can only be incremented by non-negative finite amounts, got {amount}"
            )));
        }
        self.metric.scalar()?.add(amount);
        Ok(())
    }
}

/// A value that can go up and down. `multiprocess_mode` says how values from Locust workers combine.
#[pyclass(frozen, module = "locust_prometheus_exporter._native")]
pub struct Gauge {
    pub(crate) metric: Metric,
}

metric_methods! {
    Gauge,
    #[new]
    #[pyo3(signature = (name, documentation, labelnames=Vec::new(), namespace="", subsystem="", unit="", registry=None, multiprocess_mode="livesum", *, max_series=DEFAULT_MAX_SERIES))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &str,
        documentation: &str,
        labelnames: Vec<String>,
        namespace: &str,
        subsystem: &str,
        unit: &str,
        registry: Option<&Bound<'_, CollectorRegistry>>,
        multiprocess_mode: &str,
        max_series: usize,
    ) -> PyResult<Self> {
        let kind = Kind::Gauge(GaugeMode::parse(multiprocess_mode)?);
        Ok(Gauge {
            metric: Metric::register(chosen(py, registry)?, name, documentation, labelnames, namespace, subsystem, unit, kind, max_series, None)?,
        })
    }

    #[pyo3(signature = (amount=1.0))]
    fn inc(&self, amount: f64) -> PyResult<()> {
        self.metric.scalar()?.add_stamped(amount);
        Ok(())
    }

    #[pyo3(signature = (amount=1.0))]
    fn dec(&self, amount: f64) -> PyResult<()> {
        self.metric.scalar()?.add_stamped(-amount);
        Ok(())
    }

    fn set(&self, value: f64) -> PyResult<()> {
        self.metric.scalar()?.set(value);
        Ok(())
    }

    fn set_to_current_time(&self) -> PyResult<()> {
        self.set(now())
    }

    fn track_inprogress(&self) -> PyResult<Timer> {
        timer(&self.metric, TimerAction::InProgress)
    }

    fn time(&self) -> PyResult<Timer> {
        timer(&self.metric, TimerAction::SetGauge)
    }
}

/// Counts observations in buckets (upper bounds, `+Inf` implied), with their sum and count.
#[pyclass(frozen, module = "locust_prometheus_exporter._native")]
pub struct Histogram {
    metric: Metric,
}

/// Sorted, finite bounds; a trailing `+Inf` is accepted and dropped, since it is always there.
pub fn parse_buckets(buckets: Option<Vec<f64>>, default: &[f64]) -> PyResult<Vec<f64>> {
    let mut bounds = buckets.unwrap_or_else(|| default.to_vec());
    if bounds.last() == Some(&f64::INFINITY) {
        bounds.pop();
    }
    check_buckets(&bounds)?;
    Ok(bounds)
}

metric_methods! {
    Histogram,
    #[new]
    /// `native=True` adds Prometheus native buckets of `native_schema` (-4 to 8, 3 by default).
    #[pyo3(signature = (
        name, documentation, labelnames=Vec::new(), namespace="", subsystem="", unit="", registry=None, buckets=None,
        native=false, native_schema=None, *, max_series=DEFAULT_MAX_SERIES,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &str,
        documentation: &str,
        labelnames: Vec<String>,
        namespace: &str,
        subsystem: &str,
        unit: &str,
        registry: Option<&Bound<'_, CollectorRegistry>>,
        buckets: Option<Vec<f64>>,
        native: bool,
        native_schema: Option<i32>,
        max_series: usize,
    ) -> PyResult<Self> {
        let kind = Kind::Histogram(parse_buckets(buckets, &DEFAULT_BUCKETS)?.into());
        let native = match (native, native_schema) {
            (false, Some(_)) => return Err(PyValueError::new_err("native_schema needs native=True")),
            (false, None) => None,
            (true, schema) => Some(NativeConfig::with_schema(schema.unwrap_or(NativeConfig::default().schema))?),
        };
        Ok(Histogram {
            metric: Metric::register(
                chosen(py, registry)?,
                name, documentation, labelnames, namespace, subsystem, unit, kind, max_series, native,
            )?,
        })
    }

    fn observe(&self, amount: f64) -> PyResult<()> {
        self.metric.observe(amount)
    }

    fn time(&self) -> PyResult<Timer> {
        timer(&self.metric, TimerAction::Observe)
    }
}

#[cfg(test)]
mod tests {
    use super::{full_name, Kind};

    #[test]
    fn names_are_joined_like_prometheus_client() {
        let g = Kind::Gauge(crate::metrics::GaugeMode::Sum);
        assert_eq!(full_name("x", "", "", "", &g), "x");
        assert_eq!(full_name("x", "ns", "sub", "bytes", &g), "ns_sub_x_bytes");
        assert_eq!(full_name("x_bytes", "ns", "", "bytes", &g), "ns_x_bytes");
        assert_eq!(full_name("x_total", "", "", "", &g), "x_total");
        assert_eq!(full_name("x_total", "", "", "bytes", &Kind::Counter), "x_bytes");
        assert_eq!(full_name("x_total_total", "", "", "", &Kind::Counter), "x_total");
    }
}
