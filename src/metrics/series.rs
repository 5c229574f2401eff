//! One time series: its label values and its value cell, updated with atomics only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::{Atomic, AtomicF64};

use super::native_histogram::{NativeConfig, NativeHistogram, NativeSnapshot};

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

pub struct Scalar {
    value: AtomicF64,
    updated: AtomicF64,
}

pub struct Histogram {
    bounds: std::sync::Arc<[f64]>,
    counts: Box<[AtomicU64]>,
    sum: AtomicF64,
    native: Option<NativeHistogram>,
}

pub enum Cell {
    Scalar(Scalar),
    Histogram(Histogram),
}

pub struct Series {
    pub labels: Box<[String]>,
    pub cell: Cell,
}

/// Unix time in seconds: gauges' update stamps and `set_to_current_time`.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Scalar {
    fn new() -> Self {
        Scalar {
            value: AtomicF64::new(0.0),
            updated: AtomicF64::new(0.0),
        }
    }
    /// Counter increment: no timestamp, the hot path stays two atomics short.
    pub fn add(&self, v: f64) {
        self.value.inc_by(v);
    }
    /// Gauge increment, stamped for the `mostrecent` aggregation.
    pub fn add_stamped(&self, v: f64) {
        self.value.inc_by(v);
        self.updated.set(now());
    }
    pub fn set(&self, v: f64) {
        self.value.set(v);
        self.updated.set(now());
    }
}

impl Histogram {
    fn new(bounds: std::sync::Arc<[f64]>, native: Option<NativeConfig>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            bounds,
            counts,
            sum: AtomicF64::new(0.0),
            native: native.map(NativeHistogram::new),
        }
    }
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

impl Series {
    pub fn scalar(labels: Box<[String]>) -> Self {
        Series {
            labels,
            cell: Cell::Scalar(Scalar::new()),
        }
    }
    pub fn histogram(labels: Box<[String]>, bounds: std::sync::Arc<[f64]>, native: Option<NativeConfig>) -> Self {
        Series {
            labels,
            cell: Cell::Histogram(Histogram::new(bounds, native)),
        }
    }

    pub fn value(&self) -> ValueData {
        match &self.cell {
            Cell::Scalar(s) => ValueData::Scalar {
                value: s.value.get(),
                updated: s.updated.get(),
            },
            Cell::Histogram(h) => ValueData::Histogram {
                counts: h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
                sum: h.sum.get(),
                native: h.native.as_ref().map(|n| Box::new(n.snapshot())),
            },
        }
    }

    pub fn data(&self) -> SeriesData {
        SeriesData {
            labels: self.labels.to_vec(),
            value: self.value(),
        }
    }

    /// Adds what a worker's cumulative value grew by since `last`: all of it when there is no
    /// `last`, or when the worker's series went back (it was removed and made again there), so the
    /// master's totals never go down. A value of another kind or bucket layout cannot be added.
    pub fn add_growth(&self, last: Option<&ValueData>, new: &ValueData) {
        match (&self.cell, new) {
            (Cell::Scalar(s), ValueData::Scalar { value: n, .. }) => {
                let l = match last {
                    Some(ValueData::Scalar { value, .. }) if value <= n => *value,
                    _ => 0.0,
                };
                if n != &l {
                    s.add(n - l);
                }
            }
            (
                Cell::Histogram(h),
                ValueData::Histogram {
                    counts: nc, sum: ns, ..
                },
            ) if nc.len() == h.counts.len() => {
                let base = match last {
                    Some(ValueData::Histogram { counts, sum, .. })
                        if counts.len() == nc.len() && nc.iter().zip(counts).all(|(n, l)| n >= l) =>
                    {
                        Some((counts, *sum))
                    }
                    _ => None,
                };
                // Most buckets of a reported series did not move: atomic adds of zero are skipped.
                for (i, (c, n)) in h.counts.iter().zip(nc).enumerate() {
                    let grown = n - base.map_or(0, |(lc, _)| lc[i]);
                    if grown > 0 {
                        c.fetch_add(grown, Ordering::Relaxed);
                    }
                }
                let ls = base.map_or(0.0, |(_, ls)| ls);
                if *ns != ls {
                    h.sum.inc_by(ns - ls);
                }
                if let (Some(native), ValueData::Histogram { native: Some(n), .. }) = (&h.native, new) {
                    match last {
                        Some(ValueData::Histogram { native: Some(l), .. }) if base.is_some() => native.add(&n.minus(l)),
                        _ => native.add(n),
                    }
                }
            }
            _ => {}
        }
    }

    /// Back to zero in a forked child, so that what the parent recorded is not reported twice.
    pub fn reset(&self) {
        match &self.cell {
            Cell::Scalar(s) => {
                s.value.set(0.0);
                s.updated.set(0.0);
            }
            Cell::Histogram(h) => {
                h.counts.iter().for_each(|c| c.store(0, Ordering::Relaxed));
                h.sum.set(0.0);
                if let Some(native) = &h.native {
                    native.reset();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_le_semantics() {
        let s = Series::histogram(Box::new([]), vec![0.1, 1.0].into(), Some(NativeConfig::default()));
        let Cell::Histogram(h) = &s.cell else { unreachable!() };
        for v in [0.05, 0.1, 0.5, 1.0, 2.0, f64::INFINITY] {
            h.observe(v);
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
