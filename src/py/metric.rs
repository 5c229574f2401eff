//! `Counter`, `Gauge` and `Histogram` as prometheus_client users know them.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::registry::{node_or_default, CollectorRegistry};
use super::timer::{Timer, TimerAction};
use crate::clock::unix_seconds;
use crate::distributed::Node;
use crate::errors::{no_panic, ExporterError, Result};
use crate::locust::builtin::{reserved, SERIES_DROPPED};
use crate::metrics::{
    self, parse_buckets, Desc, Family, GaugeMode, Kind, NativeConfig, Series, Typed, DEFAULT_MAX_SERIES,
};

/// A family and, once labels are bound (or when it has none), one of its series.
pub struct Metric<M> {
    /// Where the family is registered (where a series past `max_series` is counted).
    node: Arc<Node>,
    family: Arc<Family<M>>,
    series: Option<Arc<Series<M>>>,
}

impl<M> Clone for Metric<M> {
    fn clone(&self) -> Self {
        Metric {
            node: self.node.clone(),
            family: self.family.clone(),
            series: self.series.clone(),
        }
    }
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

impl<M: Typed> Metric<M> {
    pub fn new(node: Arc<Node>, family: Arc<Family<M>>) -> Self {
        let series = family
            .desc
            .label_names
            .is_empty()
            .then(|| family.child::<&str>(&[]).ok())
            .flatten();
        Metric { node, family, series }
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        node: Arc<Node>,
        name: &str,
        documentation: &str,
        labelnames: Vec<String>,
        namespace: &str,
        subsystem: &str,
        unit: &str,
        kind: Kind,
        max_series: usize,
        native: Option<NativeConfig>,
    ) -> Result<Self> {
        let desc = Desc::new(
            &full_name(name, namespace, subsystem, unit, &kind),
            documentation,
            kind,
            labelnames,
        )?;
        if reserved(&desc) {
            return Err(ExporterError::ReservedName(desc.name));
        }
        let desc = match native {
            Some(config) => desc.with_native(config),
            None => desc,
        };
        let family = no_panic(|| node.registry.register::<M>(desc))?;
        family.set_max_series(max_series);
        Ok(Metric::new(node, family))
    }

    /// A series past `max_series`: recorded into nothing, counted, logged once. Counting and logging
    /// are best effort: the user's task that called labels() runs on whatever happens.
    fn dropped(&self, py: Python<'_>, err: ExporterError) -> Arc<Series<M>> {
        let name = &self.family.desc.name;
        let counted = SERIES_DROPPED
            .desc(Kind::Counter)
            .and_then(|desc| self.node.registry.get_or_register::<metrics::Counter>(desc))
            .and_then(|family| family.child(&[name]));
        if let Ok(series) = counted {
            series.inc(1.0);
        }
        if self.family.logged.first("max_series") {
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
            return Err(ExporterError::NoLabelNames(self.family.desc.name.clone()).into());
        }
        if self.series.is_some() {
            return Err(ExporterError::LabelsApplied.into());
        }
        let kwargs = kwargs.filter(|k| !k.is_empty());
        let values: Vec<String> = match kwargs {
            Some(_) if !args.is_empty() => return Err(ExporterError::LabelArgsAndKwargs.into()),
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
                    return Err(ExporterError::LabelNames {
                        expected: names.clone(),
                        got: given,
                    }
                    .into());
                }
                names
                    .iter()
                    .map(|n| {
                        kw.get_item(n)?
                            .map_or(Ok(String::new()), |v| v.str().map(|s| s.to_string()))
                    })
                    .collect::<PyResult<_>>()?
            }
            None => label_values(args)?,
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

    /// prometheus_client's `remove(*labelvalues)`: forgets one child, in this process.
    fn remove(&self, args: &Bound<PyTuple>) -> PyResult<()> {
        self.family.remove(&label_values(args)?)?;
        Ok(())
    }

    fn series(&self) -> Result<&Arc<Series<M>>> {
        self.series
            .as_ref()
            .ok_or_else(|| ExporterError::MissingLabelValues(self.family.desc.name.clone()))
    }
}

fn label_values(args: &Bound<PyTuple>) -> PyResult<Vec<String>> {
    args.iter().map(|v| v.str().map(|s| s.to_string())).collect()
}

fn timer<M: Typed>(metric: &Metric<M>, action: fn(Arc<Series<M>>) -> TimerAction) -> Result<Timer> {
    Ok(Timer::new(action(metric.series()?.clone())))
}

/// The `#[pymethods]` all three metric classes share; each class has its own block beside them.
macro_rules! shared_metric_methods {
    ($class:ident) => {
        #[pymethods]
        impl $class {
            /// The child for these label values (converted with `str()`).
            #[pyo3(signature = (*args, **kwargs))]
            fn labels(&self, args: &Bound<PyTuple>, kwargs: Option<&Bound<PyDict>>) -> PyResult<Self> {
                Ok($class {
                    metric: self.metric.labels(args, kwargs)?,
                })
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
        }
    };
}

/// A monotonically increasing value, exposed as `<name>_total`.
#[pyclass(frozen, module = "locust_prometheus_exporter._native")]
pub struct Counter {
    pub(crate) metric: Metric<metrics::Counter>,
}

shared_metric_methods!(Counter);

#[pymethods]
impl Counter {
    #[new]
    #[pyo3(signature = (
        name, documentation, labelnames=Vec::new(), namespace="", subsystem="", unit="", registry=None,
        *, max_series=DEFAULT_MAX_SERIES,
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
        max_series: usize,
    ) -> PyResult<Self> {
        Ok(Counter {
            metric: Metric::register(
                node_or_default(py, registry)?,
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
    fn inc(&self, amount: f64) -> Result<()> {
        if !(amount >= 0.0 && amount.is_finite()) {
            return Err(ExporterError::NegativeIncrement(amount));
        }
        self.metric.series()?.inc(amount);
        Ok(())
    }
}

/// A value that can go up and down. `multiprocess_mode` says how values from Locust workers combine.
#[pyclass(frozen, module = "locust_prometheus_exporter._native")]
pub struct Gauge {
    pub(crate) metric: Metric<metrics::Gauge>,
}

shared_metric_methods!(Gauge);

#[pymethods]
impl Gauge {
    #[new]
    #[pyo3(signature = (
        name, documentation, labelnames=Vec::new(), namespace="", subsystem="", unit="", registry=None,
        multiprocess_mode="livesum", *, max_series=DEFAULT_MAX_SERIES,
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
        multiprocess_mode: &str,
        max_series: usize,
    ) -> PyResult<Self> {
        let kind = Kind::Gauge(GaugeMode::parse(multiprocess_mode)?);
        Ok(Gauge {
            metric: Metric::register(
                node_or_default(py, registry)?,
                name,
                documentation,
                labelnames,
                namespace,
                subsystem,
                unit,
                kind,
                max_series,
                None,
            )?,
        })
    }

    #[pyo3(signature = (amount=1.0))]
    fn inc(&self, amount: f64) -> Result<()> {
        self.metric.series()?.add(amount);
        Ok(())
    }

    #[pyo3(signature = (amount=1.0))]
    fn dec(&self, amount: f64) -> Result<()> {
        self.metric.series()?.add(-amount);
        Ok(())
    }

    fn set(&self, value: f64) -> Result<()> {
        self.metric.series()?.set(value);
        Ok(())
    }

    fn set_to_current_time(&self) -> Result<()> {
        self.set(unix_seconds())
    }

    fn track_inprogress(&self) -> Result<Timer> {
        timer(&self.metric, TimerAction::InProgress)
    }

    fn time(&self) -> Result<Timer> {
        timer(&self.metric, TimerAction::SetGauge)
    }
}

/// Counts observations in buckets (upper bounds, `+Inf` implied), with their sum and count.
#[pyclass(frozen, module = "locust_prometheus_exporter._native")]
pub struct Histogram {
    metric: Metric<metrics::Histogram>,
}

shared_metric_methods!(Histogram);

#[pymethods]
impl Histogram {
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
        let kind = Kind::Histogram(parse_buckets(buckets)?.into());
        let native = match (native, native_schema) {
            (false, Some(_)) => return Err(ExporterError::SchemaWithoutNative.into()),
            (false, None) => None,
            (true, schema) => Some(NativeConfig::with_schema(
                schema.unwrap_or(NativeConfig::default().schema),
            )?),
        };
        Ok(Histogram {
            metric: Metric::register(
                node_or_default(py, registry)?,
                name,
                documentation,
                labelnames,
                namespace,
                subsystem,
                unit,
                kind,
                max_series,
                native,
            )?,
        })
    }

    fn observe(&self, amount: f64) -> Result<()> {
        if amount.is_nan() {
            return Err(ExporterError::ObserveNaN);
        }
        self.metric.series()?.observe(amount);
        Ok(())
    }

    fn time(&self) -> Result<Timer> {
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
