//! A scrape's view of the workers' reports, merged with the master's own series by each family's kind.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::metrics::{AnyFamily, Desc, GaugeMode, Kind, SeriesData, ValueData};

/// Label value of the `worker` label for the serving process's own values (gauge mode `all`).
const LOCAL_WORKER: &str = "local";

/// A gauge as a worker last reported it: its value, with the time the master received it (0: never
/// set), and the worker's own time stamp, which tells a new write from a repeated report.
#[derive(Clone)]
pub struct StoredGauge {
    pub stamp: f64,
    pub data: SeriesData,
}

impl StoredGauge {
    pub fn received(&self) -> f64 {
        match self.data.value {
            ValueData::Scalar { updated, .. } => updated,
            ValueData::Histogram { .. } => 0.0,
        }
    }
}

/// Family name -> series key -> the gauge as a worker last reported it.
pub type Gauges = HashMap<String, HashMap<String, StoredGauge>>;

/// The workers as they were when a scrape began.
pub struct Snapshot {
    /// Per worker whose gauges are kept: its id, whether Locust counts it live, its gauges.
    pub gauges: Vec<(String, bool, Arc<Gauges>)>,
    pub totals: HashMap<String, AnyFamily>,
}

impl Snapshot {
    /// Merges the serving process's own series with the workers', the way the family's kind says.
    pub fn merge(&self, desc: &Desc, local: Vec<SeriesData>) -> Vec<SeriesData> {
        let mut merged: BTreeMap<Vec<String>, Merged> = BTreeMap::new();
        match desc.kind {
            Kind::Gauge(mode) => {
                let workers = self.gauges.iter().map(|(id, live, gauges)| {
                    let series = gauges
                        .get(&desc.name)
                        .map(|m| m.values().map(|g| &g.data).collect())
                        .unwrap_or_default();
                    (id.as_str(), *live, series)
                });
                for (source, live, series) in
                    std::iter::once((LOCAL_WORKER, true, local.iter().collect::<Vec<_>>())).chain(workers)
                {
                    if mode.live_only() && !live {
                        continue;
                    }
                    for s in series {
                        let ValueData::Scalar { value, updated } = s.value else {
                            continue;
                        };
                        let mut labels = s.labels.clone();
                        if matches!(mode, GaugeMode::All | GaugeMode::LiveAll) {
                            // One series per process that set a value; a never-set one would read 0.
                            if updated == 0.0 {
                                continue;
                            }
                            labels.push(source.to_string());
                        }
                        merged
                            .entry(labels)
                            .or_insert(Merged::Empty)
                            .gauge(mode, value, updated);
                    }
                }
            }
            _ => {
                let totals = self
                    .totals
                    .get(&desc.name)
                    .filter(|f| f.desc() == desc)
                    .map(AnyFamily::data)
                    .unwrap_or_default();
                for s in local.into_iter().chain(totals) {
                    merged.entry(s.labels).or_insert(Merged::Empty).add(s.value);
                }
            }
        }
        merged
            .into_iter()
            .filter_map(|(labels, m)| m.into_value().map(|value| SeriesData { labels, value }))
            .collect()
    }
}

enum Merged {
    Empty,
    /// Only gauges never set so far (their zero shows only if no process set a value).
    Unset(ValueData),
    Value(ValueData),
}

impl Merged {
    fn add(&mut self, v: ValueData) {
        match (&mut *self, &v) {
            (Merged::Empty | Merged::Unset(_), _) => *self = Merged::Value(v),
            (Merged::Value(ValueData::Scalar { value, .. }), ValueData::Scalar { value: x, .. }) => *value += x,
            (
                Merged::Value(ValueData::Histogram { counts, sum, native }),
                ValueData::Histogram {
                    counts: c,
                    sum: s,
                    native: n,
                },
            ) if counts.len() == c.len() => {
                // Saturating: a worker's counts are checked one by one, not their sum with the master's.
                counts.iter_mut().zip(c).for_each(|(a, b)| *a = a.saturating_add(*b));
                *sum += s;
                // Native buckets merge exactly, but only if every source has them (a worker whose family
                // has none, or a master that missed the worker's full report, serves the classic ones alone).
                match (native.as_deref_mut(), n) {
                    (Some(mine), Some(theirs)) => mine.merge(theirs),
                    _ => *native = None,
                }
            }
            // Bucket layouts that disagree cannot be summed; the first one seen stays.
            _ => {}
        }
    }

    fn gauge(&mut self, mode: GaugeMode, x: f64, at: f64) {
        let fresh = ValueData::Scalar { value: x, updated: at };
        let Merged::Value(ValueData::Scalar { value, updated }) = self else {
            // A gauge never set in a process takes no part, so min and max see set values only.
            *self = if at == 0.0 {
                Merged::Unset(fresh)
            } else {
                Merged::Value(fresh)
            };
            return;
        };
        if at == 0.0 {
            return;
        }
        match mode {
            GaugeMode::Sum | GaugeMode::LiveSum => *value += x,
            GaugeMode::Min | GaugeMode::LiveMin => *value = value.min(x),
            GaugeMode::Max | GaugeMode::LiveMax => *value = value.max(x),
            GaugeMode::MostRecent | GaugeMode::LiveMostRecent if at > *updated => {
                *value = x;
                *updated = at;
            }
            _ => {}
        }
    }

    fn into_value(self) -> Option<ValueData> {
        match self {
            Merged::Empty => None,
            Merged::Unset(v) | Merged::Value(v) => Some(v),
        }
    }
}
