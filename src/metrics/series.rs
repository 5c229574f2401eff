//! The value types of series (`Counter`, `Gauge`, `Histogram`), updated with atomics only, and
//! the plain copies of their values that rendering and workers' reports use.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::{Atomic, AtomicF64};

use super::family::{AnyFamily, Desc, Family, Kind};
use super::native_histogram::{NativeHistogram, NativeSnapshot};

/// A plain copy of a series' value: what a scrape renders and what a worker reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueData {
    /// Counter or gauge; `updated` is the wall-clock time of the last write (for `mostrecent`).
    Scalar { value: f64, updated: f64 },
    /// Histogram: per-bucket (not cumulative) counts, the last one being `+Inf`, and the sum;
    /// with the native buckets too when the family has them.
    Histogram {
        counts: Vec<u64>,
        sum: f64,
        native: Option<Box<NativeSnapshot>>,
    },
}

impl ValueData {
    /// What a worker ships for a value it last shipped as `previous`: the native buckets as increments
    /// (the buckets that changed only), unless there is nothing to add them to or the series went back
    /// (it was removed and made again), when they go whole.
    pub fn for_report(&self, previous: Option<&ValueData>) -> ValueData {
        match (self, previous) {
            (
                ValueData::Histogram {
                    counts,
                    sum,
                    native: Some(now),
                },
                Some(ValueData::Histogram { native: Some(then), .. }),
            ) if now.count >= then.count => ValueData::Histogram {
                counts: counts.clone(),
                sum: *sum,
                native: Some(Box::new(NativeSnapshot {
                    increments: true,
                    ..now.minus(then)
                })),
            },
            _ => self.clone(),
        }
    }

    /// On the master: a reported value with cumulative native buckets again, from the `last` value
    /// reported for the series; without native buckets if there is nothing to add the increments to
    /// (the master started after the worker's first report: the next full report brings them).
    pub fn cumulative_after(mut self, last: Option<&ValueData>) -> ValueData {
        if let ValueData::Histogram { native, .. } = &mut self {
            if native.as_ref().is_some_and(|n| n.increments) {
                *native = match (native.take(), last) {
                    (Some(added), Some(ValueData::Histogram { native: Some(base), .. })) => {
                        let mut total = base.clone();
                        total.merge(&NativeSnapshot {
                            increments: false,
                            ..*added
                        });
                        Some(total)
                    }
                    _ => None,
                };
            }
        }
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub labels: Vec<String>,
    pub value: ValueData,
}

/// A series as a worker's report carries it, its label values borrowed from the report: the master
/// allocates them only for a series it has not seen from that worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedSeries<'a> {
    pub labels: Vec<&'a str>,
    pub value: ValueData,
}

/// A counter's value; counters need no update stamp (`mostrecent` is a gauge mode).
pub struct Counter {
    value: AtomicF64,
}

/// A gauge's value and the wall-clock time of its last write, for the `mostrecent` modes.
pub struct Gauge {
    value: AtomicF64,
    updated: AtomicF64,
}

pub struct Histogram {
    bounds: Arc<[f64]>,
    counts: Box<[AtomicU64]>,
    sum: AtomicF64,
    native: Option<NativeHistogram>,
}

/// The value type of a family's series: `Counter`, `Gauge` or `Histogram`.
pub trait MetricType: Send + Sync + Sized + 'static {
    /// A value at zero for a series of a family of this descriptor.
    fn new(desc: &Desc) -> Self;
    /// Whether a family of this kind holds values of this type.
    fn is_kind(kind: &Kind) -> bool;
    fn value(&self) -> ValueData;
    /// Back to zero in a forked child, so that what the parent recorded is not reported twice.
    fn reset(&self);
    /// The family, type-erased, as the registry holds it.
    fn erase(family: Arc<Family<Self>>) -> AnyFamily;
    /// The family as a family of this type, if it is one.
    fn typed(family: &AnyFamily) -> Option<&Arc<Family<Self>>>;
}

/// What the master adds workers' growth to: counters and histograms (gauges are not summed).
pub trait Grow: Send + Sync {
    /// Adds what a worker's cumulative value grew by since `last`: all of it when there is no
    /// `last`, or when the worker's series went back (it was removed and made again there), so the
    /// master's totals never go down. A value of another kind or bucket layout cannot be added.
    fn add_growth(&self, last: Option<&ValueData>, new: &ValueData);
}

/// One time series: its label values and its value, updated with atomics only.
pub struct Series<M> {
    labels: Box<[String]>,
    metric: M,
}

/// Unix time in seconds: gauges' update stamps and `set_to_current_time`.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Counter {
    pub fn inc(&self, v: f64) {
        self.value.inc_by(v);
    }
}

impl MetricType for Counter {
    fn new(_: &Desc) -> Self {
        Counter {
            value: AtomicF64::new(0.0),
        }
    }
    fn is_kind(kind: &Kind) -> bool {
        matches!(kind, Kind::Counter)
    }
    fn value(&self) -> ValueData {
        ValueData::Scalar {
            value: self.value.get(),
            updated: 0.0,
        }
    }
    fn reset(&self) {
        self.value.set(0.0);
    }
    fn erase(family: Arc<Family<Self>>) -> AnyFamily {
        AnyFamily::Counter(family)
    }
    fn typed(family: &AnyFamily) -> Option<&Arc<Family<Self>>> {
        match family {
            AnyFamily::Counter(f) => Some(f),
            _ => None,
        }
    }
}

impl Grow for Counter {
    fn add_growth(&self, last: Option<&ValueData>, new: &ValueData) {
        let ValueData::Scalar { value: n, .. } = new else {
            return;
        };
        let l = match last {
            Some(ValueData::Scalar { value, .. }) if value <= n => *value,
            _ => 0.0,
        };
        if *n != l {
            self.inc(n - l);
        }
    }
}

impl Gauge {
    pub fn add(&self, v: f64) {
        self.value.inc_by(v);
        self.updated.set(now());
    }
    pub fn set(&self, v: f64) {
        self.value.set(v);
        self.updated.set(now());
    }
}

impl MetricType for Gauge {
    fn new(_: &Desc) -> Self {
        Gauge {
            value: AtomicF64::new(0.0),
            updated: AtomicF64::new(0.0),
        }
    }
    fn is_kind(kind: &Kind) -> bool {
        matches!(kind, Kind::Gauge(_))
    }
    fn value(&self) -> ValueData {
        ValueData::Scalar {
            value: self.value.get(),
            updated: self.updated.get(),
        }
    }
    fn reset(&self) {
        self.value.set(0.0);
        self.updated.set(0.0);
    }
    fn erase(family: Arc<Family<Self>>) -> AnyFamily {
        AnyFamily::Gauge(family)
    }
    fn typed(family: &AnyFamily) -> Option<&Arc<Family<Self>>> {
        match family {
            AnyFamily::Gauge(f) => Some(f),
            _ => None,
        }
    }
}

impl Histogram {
    /// Counts `v` in the first bucket whose upper bound is >= `v` (Prometheus `le` semantics).
    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.inc_by(v);
        if let Some(native) = &self.native {
            native.observe(v);
        }
    }
}

impl MetricType for Histogram {
    fn new(desc: &Desc) -> Self {
        let bounds: Arc<[f64]> = match &desc.kind {
            Kind::Histogram(bounds) => bounds.clone(),
            _ => Arc::new([]),
        };
        Histogram {
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            bounds,
            sum: AtomicF64::new(0.0),
            native: desc.native.map(NativeHistogram::new),
        }
    }
    fn is_kind(kind: &Kind) -> bool {
        matches!(kind, Kind::Histogram(_))
    }
    fn value(&self) -> ValueData {
        ValueData::Histogram {
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum: self.sum.get(),
            native: self.native.as_ref().map(|n| Box::new(n.snapshot())),
        }
    }
    fn reset(&self) {
        self.counts.iter().for_each(|c| c.store(0, Ordering::Relaxed));
        self.sum.set(0.0);
        if let Some(native) = &self.native {
            native.reset();
        }
    }
    fn erase(family: Arc<Family<Self>>) -> AnyFamily {
        AnyFamily::Histogram(family)
    }
    fn typed(family: &AnyFamily) -> Option<&Arc<Family<Self>>> {
        match family {
            AnyFamily::Histogram(f) => Some(f),
            _ => None,
        }
    }
}

impl Grow for Histogram {
    fn add_growth(&self, last: Option<&ValueData>, new: &ValueData) {
        let ValueData::Histogram {
            counts: nc,
            sum: ns,
            native: nn,
        } = new
        else {
            return;
        };
        if nc.len() != self.counts.len() {
            return;
        }
        let base = match last {
            Some(ValueData::Histogram { counts, sum, .. })
                if counts.len() == nc.len() && nc.iter().zip(counts).all(|(n, l)| n >= l) =>
            {
                Some((counts, *sum))
            }
            _ => None,
        };
        // Most buckets of a reported series did not move: atomic adds of zero are skipped.
        for (i, (c, n)) in self.counts.iter().zip(nc).enumerate() {
            let grown = n - base.map_or(0, |(lc, _)| lc[i]);
            if grown > 0 {
                c.fetch_add(grown, Ordering::Relaxed);
            }
        }
        let ls = base.map_or(0.0, |(_, ls)| ls);
        if *ns != ls {
            self.sum.inc_by(ns - ls);
        }
        if let (Some(native), Some(n)) = (&self.native, nn) {
            match last {
                Some(ValueData::Histogram { native: Some(l), .. }) if base.is_some() => native.add(&n.minus(l)),
                _ => native.add(n),
            }
        }
    }
}

impl<M: MetricType> Series<M> {
    pub fn new(labels: Box<[String]>, metric: M) -> Self {
        Series { labels, metric }
    }

    pub fn data(&self) -> SeriesData {
        SeriesData {
            labels: self.labels.to_vec(),
            value: self.metric.value(),
        }
    }
}

impl<M> Deref for Series<M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.metric
    }
}

impl<M: Grow> Grow for Series<M> {
    fn add_growth(&self, last: Option<&ValueData>, new: &ValueData) {
        self.metric.add_growth(last, new);
    }
}

#[cfg(test)]
mod tests {
    use super::super::native_histogram::NativeConfig;
    use super::*;

    #[test]
    fn histogram_le_semantics() {
        let desc = Desc::new("h", "h", Kind::Histogram([0.1, 1.0].into()), vec![])
            .unwrap()
            .with_native(NativeConfig::default());
        let s = Series::new(Box::new([]), Histogram::new(&desc));
        for v in [0.05, 0.1, 0.5, 1.0, 2.0, f64::INFINITY] {
            s.observe(v);
        }
        let ValueData::Histogram {
            counts,
            native: Some(native),
            ..
        } = s.value()
        else {
            unreachable!()
        };
        assert_eq!(counts, vec![2, 2, 2]);
        assert_eq!(native.count, 6, "the native buckets see every observation too");
        s.reset();
        assert_eq!(
            s.value(),
            ValueData::Histogram {
                counts: vec![0, 0, 0],
                sum: 0.0,
                native: Some(Box::new(NativeSnapshot::empty(&NativeConfig::default()))),
            }
        );
    }
}
