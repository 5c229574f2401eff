//! A metric family: its descriptor and its series of one value type, found by the exact label values.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::names::{check_label_names, check_metric_name};
use super::native_histogram::NativeConfig;
use super::series::{Counter, Gauge, Grow, Histogram, MetricType, Series, SeriesData};
use crate::errors::{ExporterError, Result};

/// How a gauge's values from several processes (Locust workers) combine on the master.
/// Named as prometheus_client's `multiprocess_mode`; the `live` variants drop missing workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaugeMode {
    All,
    LiveAll,
    Min,
    LiveMin,
    Max,
    LiveMax,
    Sum,
    LiveSum,
    MostRecent,
    LiveMostRecent,
}

const GAUGE_MODES: [(GaugeMode, &str); 10] = [
    (GaugeMode::All, "all"),
    (GaugeMode::LiveAll, "liveall"),
    (GaugeMode::Min, "min"),
    (GaugeMode::LiveMin, "livemin"),
    (GaugeMode::Max, "max"),
    (GaugeMode::LiveMax, "livemax"),
    (GaugeMode::Sum, "sum"),
    (GaugeMode::LiveSum, "livesum"),
    (GaugeMode::MostRecent, "mostrecent"),
    (GaugeMode::LiveMostRecent, "livemostrecent"),
];

impl GaugeMode {
    pub fn parse(s: &str) -> Result<Self> {
        GAUGE_MODES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(m, _)| *m)
            .ok_or_else(|| {
                let names: Vec<_> = GAUGE_MODES.iter().map(|(_, n)| *n).collect();
                ExporterError::InvalidValue(format!("invalid multiprocess_mode {s:?}: expected one of {names:?}"))
            })
    }
    pub fn code(self) -> u8 {
        GAUGE_MODES.iter().position(|(m, _)| *m == self).unwrap_or(0) as u8
    }
    pub fn from_code(c: u8) -> Option<Self> {
        GAUGE_MODES.get(c as usize).map(|(m, _)| *m)
    }
    /// Whether values of workers that Locust marked missing are left out.
    pub fn live_only(self) -> bool {
        matches!(
            self,
            Self::LiveAll | Self::LiveMin | Self::LiveMax | Self::LiveSum | Self::LiveMostRecent
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Counter,
    Gauge(GaugeMode),
    /// Upper bounds, increasing, without the implicit `+Inf`.
    Histogram(Arc<[f64]>),
}

#[derive(Clone, Debug)]
pub struct Desc {
    /// Base name: a counter's samples add `_total`, a histogram's `_bucket`, `_sum`, `_count`.
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub label_names: Vec<String>,
    /// A histogram's native buckets, kept beside the classic ones.
    pub native: Option<NativeConfig>,
}

/// The native layout is left out: it is this process's own resolution, and a family reported
/// by a worker with another one (or none) still merges by its classic buckets.
impl PartialEq for Desc {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, &self.help, &self.kind, &self.label_names)
            == (&other.name, &other.help, &other.kind, &other.label_names)
    }
}

impl Desc {
    /// Validates a descriptor; `name` is the base name (a counter's without `_total`).
    pub fn new(name: &str, help: &str, kind: Kind, label_names: Vec<String>) -> Result<Self> {
        check_metric_name(name)?;
        // `le` is the histogram's own label; `worker` is added by the gauge modes with one series per process.
        let reserved: &[&str] = match kind {
            Kind::Histogram(_) => &["le"],
            Kind::Gauge(GaugeMode::All | GaugeMode::LiveAll) => &["worker"],
            _ => &[],
        };
        check_label_names(&label_names, reserved)?;
        if let Kind::Histogram(bounds) = &kind {
            check_buckets(bounds)?;
        }
        Ok(Desc {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            label_names,
            native: None,
        })
    }

    /// The same histogram with native buckets too.
    pub fn with_native(self, config: NativeConfig) -> Self {
        Desc {
            native: Some(config),
            ..self
        }
    }

    /// Every sample name the family may expose; two families clash when these meet.
    pub fn exposed_names(&self) -> Vec<String> {
        let suffixes: &[&str] = match self.kind {
            Kind::Counter => &["", "_total", "_created"],
            Kind::Gauge(_) => &[""],
            Kind::Histogram(_) => &["", "_bucket", "_sum", "_count", "_created"],
        };
        suffixes.iter().map(|s| format!("{}{s}", self.name)).collect()
    }
}

/// Histogram buckets in seconds, from 1 ms to 60 s: load-test latencies, not RPC ones. The default of
/// every histogram, Locust's request durations and custom ones alike.
pub const DEFAULT_BUCKETS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
];

/// Bucket bounds as given (`DEFAULT_BUCKETS` if none): a trailing `+Inf` is accepted and dropped,
/// since it is always there, and the rest checked.
pub fn parse_buckets(buckets: Option<Vec<f64>>) -> Result<Vec<f64>> {
    let mut bounds = buckets.unwrap_or_else(|| DEFAULT_BUCKETS.to_vec());
    if bounds.last() == Some(&f64::INFINITY) {
        bounds.pop();
    }
    check_buckets(&bounds)?;
    Ok(bounds)
}

/// Finite, strictly increasing bounds; `+Inf` is implied.
pub fn check_buckets(bounds: &[f64]) -> Result<()> {
    if bounds.is_empty() {
        return Err(ExporterError::InvalidBuckets(
            "at least one finite bucket is needed besides +Inf".into(),
        ));
    }
    if bounds.iter().any(|b| !b.is_finite()) {
        return Err(ExporterError::InvalidBuckets(format!(
            "bounds must be finite numbers, got {bounds:?}"
        )));
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ExporterError::InvalidBuckets(format!(
            "buckets not in strictly increasing order: {bounds:?}"
        )));
    }
    Ok(())
}

/// Exact, unambiguous key of a label-value list: `("ab","c")` and `("a","bc")` differ.
pub fn series_key<S: AsRef<str>>(values: &[S]) -> String {
    let mut key = String::new();
    push_series_key(&mut key, values);
    key
}

/// Appends `n` in decimal, digits by hand: the formatting machinery costs more than the rest of a
/// series key, and than the rest of a count in an exposition.
pub fn write_uint(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| d as char));
}

/// Appends the key of `values` (each as its byte length in decimal, `:`, the value) to `key`, for
/// callers that reuse one buffer: the request path and the master's report handling, per series.
pub fn push_series_key<S: AsRef<str>>(key: &mut String, values: &[S]) {
    key.reserve(values.iter().map(|v| v.as_ref().len() + 4).sum());
    for v in values {
        let v = v.as_ref();
        write_uint(key, v.len() as u64);
        key.push(':');
        key.push_str(v);
    }
}

pub struct Family<M> {
    pub desc: Desc,
    series: RwLock<HashMap<String, Arc<Series<M>>>>,
    /// Most series `child` makes (0: no limit).
    max_series: AtomicUsize,
    /// Whether the refusal of a series past the limit was logged (once per family).
    pub limit_logged: AtomicBool,
}

impl<M: MetricType> Family<M> {
    /// A family of `desc`, whose kind is `M`'s (the registry's callers make sure of it).
    pub fn new(desc: Desc) -> Self {
        let family = Family {
            desc,
            series: RwLock::new(HashMap::new()),
            max_series: AtomicUsize::new(0),
            limit_logged: AtomicBool::new(false),
        };
        if family.desc.label_names.is_empty() {
            // An unlabelled metric exists from the start, at zero, as with prometheus_client.
            let empty: [&str; 0] = [];
            let _ = family.child(&empty);
        }
        family
    }

    pub fn set_max_series(&self, max: usize) {
        self.max_series.store(max, Ordering::Relaxed);
    }

    /// A series that the family does not keep: what a caller past the limit on series records
    /// into, so that its code runs on and nothing is exported.
    pub fn detached(&self) -> Arc<Series<M>> {
        Arc::new(Series::new(Box::new([]), M::new(&self.desc)))
    }

    fn check_count(&self, got: usize) -> Result<()> {
        let expected = self.desc.label_names.len();
        if got == expected {
            Ok(())
        } else {
            Err(ExporterError::LabelCount { expected, got })
        }
    }

    /// The series for these label values, created on first use (`TooManySeries` past the limit).
    pub fn child<S: AsRef<str>>(&self, values: &[S]) -> Result<Arc<Series<M>>> {
        self.check_count(values.len())?;
        let key = series_key(values);
        if let Some(s) = self.series.read().get(&key) {
            return Ok(s.clone());
        }
        let labels: Box<[String]> = values.iter().map(|v| v.as_ref().to_string()).collect();
        let mut map = self.series.write();
        let max = self.max_series.load(Ordering::Relaxed);
        if max != 0 && map.len() >= max && !map.contains_key(&key) {
            return Err(ExporterError::TooManySeries {
                metric: self.desc.name.clone(),
                max,
            });
        }
        let series = map
            .entry(key)
            .or_insert_with(|| Arc::new(Series::new(labels, M::new(&self.desc))));
        Ok(series.clone())
    }

    /// Forgets one series (prometheus_client's `remove`); false if there was none.
    pub fn remove<S: AsRef<str>>(&self, values: &[S]) -> Result<bool> {
        if self.desc.label_names.is_empty() {
            return Err(ExporterError::NoLabelNames(self.desc.name.clone()));
        }
        self.check_count(values.len())?;
        Ok(self.series.write().remove(&series_key(values)).is_some())
    }

    /// Forgets every series of a labelled family.
    pub fn clear(&self) {
        if !self.desc.label_names.is_empty() {
            self.series.write().clear();
        }
    }

    /// The series as they are now; the lock is held only to copy the handles.
    pub fn series(&self) -> Vec<Arc<Series<M>>> {
        self.series.read().values().cloned().collect()
    }
}

/// A family of any kind, as the registry holds it.
#[derive(Clone)]
pub enum AnyFamily {
    Counter(Arc<Family<Counter>>),
    Gauge(Arc<Family<Gauge>>),
    Histogram(Arc<Family<Histogram>>),
}

/// `$body` with `$f` bound to the typed family, whatever its kind.
macro_rules! each_kind {
    ($any:expr, $f:ident => $body:expr) => {
        match $any {
            AnyFamily::Counter($f) => $body,
            AnyFamily::Gauge($f) => $body,
            AnyFamily::Histogram($f) => $body,
        }
    };
}

impl AnyFamily {
    /// A family of the type that `desc`'s kind says.
    pub fn new(desc: Desc) -> Self {
        match desc.kind {
            Kind::Counter => AnyFamily::Counter(Arc::new(Family::new(desc))),
            Kind::Gauge(_) => AnyFamily::Gauge(Arc::new(Family::new(desc))),
            Kind::Histogram(_) => AnyFamily::Histogram(Arc::new(Family::new(desc))),
        }
    }

    pub fn desc(&self) -> &Desc {
        each_kind!(self, f => &f.desc)
    }

    /// Copies of the series as they are now.
    pub fn data(&self) -> Vec<SeriesData> {
        each_kind!(self, f => f.series().iter().map(|s| s.data()).collect())
    }

    /// Every series back to zero, the family and its series kept (the handles Python holds).
    pub fn reset(&self) {
        each_kind!(self, f => f.series().iter().for_each(|s| s.reset()))
    }

    /// The series that workers' growth is added to: a counter's or a histogram's (none for a gauge).
    pub fn growing_child(&self, values: &[&str]) -> Option<Result<Arc<dyn Grow>>> {
        match self {
            AnyFamily::Counter(f) => Some(f.child(values).map(|s| s as Arc<dyn Grow>)),
            AnyFamily::Histogram(f) => Some(f.child(values).map(|s| s as Arc<dyn Grow>)),
            AnyFamily::Gauge(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_exact() {
        assert_ne!(series_key(&["ab", "c"]), series_key(&["a", "bc"]));
        assert_ne!(series_key(&["1:a"]), series_key(&["1", "a"]));
        assert_eq!(
            series_key(&["", "x".repeat(1234).as_str()]),
            format!("0:1234:{}", "x".repeat(1234))
        );
        let f = Family::<Counter>::new(Desc::new("f", "h", Kind::Counter, vec!["a".into(), "b".into()]).unwrap());
        let x = f.child(&["ab", "c"]).unwrap();
        let y = f.child(&["a", "bc"]).unwrap();
        assert!(!Arc::ptr_eq(&x, &y));
        assert!(Arc::ptr_eq(&x, &f.child(&["ab", "c"]).unwrap()));
        assert_eq!(f.series().len(), 2);
    }

    #[test]
    fn past_the_limit_no_new_series_is_made() {
        let f = Family::<Counter>::new(Desc::new("f", "h", Kind::Counter, vec!["a".into()]).unwrap());
        f.set_max_series(2);
        f.child(&["x"]).unwrap();
        f.child(&["y"]).unwrap();
        assert!(matches!(
            f.child(&["z"]),
            Err(ExporterError::TooManySeries { max: 2, .. })
        ));
        assert!(f.child(&["x"]).is_ok(), "existing series are still found");
        assert_eq!(f.series().len(), 2);
    }

    #[test]
    fn label_count_is_checked() {
        let f = Family::<Counter>::new(Desc::new("f", "h", Kind::Counter, vec!["a".into()]).unwrap());
        assert!(matches!(
            f.child(&["x", "y"]),
            Err(ExporterError::LabelCount { expected: 1, got: 2 })
        ));
        assert!(f.series().is_empty());
    }

    #[test]
    fn counter_names_and_buckets() {
        let d = Desc::new("x", "h", Kind::Counter, vec![]).unwrap();
        assert!(d.exposed_names().contains(&"x_total".to_string()));
        assert!(Desc::new("g", "h", Kind::Gauge(GaugeMode::All), vec!["worker".into()]).is_err());
        assert!(Desc::new("g", "h", Kind::Gauge(GaugeMode::Sum), vec!["worker".into()]).is_ok());
        for bad in [&[][..], &[1.0, 0.5], &[1.0, 1.0], &[f64::NAN]] {
            assert!(Desc::new("h", "h", Kind::Histogram(bad.into()), vec![]).is_err());
        }
        assert!(Desc::new("h", "h", Kind::Histogram([1.0].into()), vec!["le".into()]).is_err());
    }
}
