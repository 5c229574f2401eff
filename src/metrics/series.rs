//! The value types of series (`Counter`, `Gauge`, `Histogram`), updated with atomics only.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::atomic_f64::AtomicF64;
use super::data::{SeriesData, ValueData};
use super::desc::{Desc, Kind};
use super::native_histogram::NativeHistogram;
use crate::clock::unix_seconds;

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
pub trait ValueType: Send + Sync + Sized + 'static {
    /// A value at zero for a series of a family of this descriptor.
    fn new(desc: &Desc) -> Self;
    /// Whether a family of this kind holds values of this type.
    fn is_kind(kind: &Kind) -> bool;
    fn value(&self) -> ValueData;
    /// Back to zero in a forked child, so that what the parent recorded is not reported twice.
    fn reset(&self);
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

impl Counter {
    pub fn inc(&self, v: f64) {
        self.value.inc_by(v);
    }
}

impl ValueType for Counter {
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
        self.updated.set(unix_seconds());
    }
    pub fn set(&self, v: f64) {
        self.value.set(v);
        self.updated.set(unix_seconds());
    }
}

impl ValueType for Gauge {
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

impl ValueType for Histogram {
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

impl<M: ValueType> Series<M> {
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
    use super::super::native_histogram::{NativeConfig, NativeSnapshot};
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
