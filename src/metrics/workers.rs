//! What the master keeps of each Locust worker's reports, and how it merges with its own series.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::family::{series_key, Desc, GaugeMode, Kind};
use super::series::{SeriesData, ValueData};

/// Label value of the `worker` label for the serving process's own values (gauge mode `all`).
const LOCAL_WORKER: &str = "local";

/// One worker series: what the master serves for it, and the value the worker last reported.
#[derive(Clone)]
struct Reported {
    served: SeriesData,
    last: ValueData,
}

#[derive(Default, Clone)]
struct Worker {
    live: bool,
    /// family name -> series key -> its values
    families: HashMap<String, HashMap<String, Reported>>,
}

/// Workers are shared with scrapes by `Arc`: a scrape merges a snapshot without holding the lock
/// that report handling (on Locust's gevent loop) takes; a report arriving meanwhile copies on write.
#[derive(Default)]
pub struct Workers {
    workers: BTreeMap<String, Arc<Worker>>,
}

/// The workers as they were when a scrape began.
pub struct Snapshot(Vec<(String, Arc<Worker>)>);

/// What a counter or histogram served for a worker becomes when `new` is reported after `last`:
/// it grows by the difference, or by all of `new` when the worker's series went back (it was
/// removed and made again there), so the master's counters never go down.
fn accumulate(served: &mut ValueData, last: &ValueData, new: &ValueData) {
    match (served, last, new) {
        (ValueData::Scalar { value, .. }, ValueData::Scalar { value: l, .. }, ValueData::Scalar { value: n, .. }) => {
            *value += if n >= l { n - l } else { *n };
        }
        (
            ValueData::Histogram { counts, sum, native },
            ValueData::Histogram {
                counts: lc,
                sum: ls,
                native: ln,
            },
            ValueData::Histogram {
                counts: nc,
                sum: ns,
                native: nn,
            },
        ) if counts.len() == nc.len() && lc.len() == nc.len() => {
            let reset = nc.iter().zip(lc).any(|(n, l)| n < l);
            for ((c, n), l) in counts.iter_mut().zip(nc).zip(lc) {
                *c += if reset { *n } else { n - l };
            }
            *sum += if reset { *ns } else { ns - ls };
            let total: u64 = counts.iter().sum();
            *native = match (native.take(), ln, nn) {
                (Some(mut served), Some(last), Some(new)) => {
                    served.merge(&if reset { (**new).clone() } else { new.minus(last) });
                    Some(served)
                }
                // Native buckets missed (a master started late) come back with a full report, which
                // is taken when it accounts for every classic count served.
                (None, _, Some(new)) if new.count == total => Some(new.clone()),
                _ => None,
            };
        }
        (served, _, new) => *served = new.clone(),
    }
}

impl Workers {
    /// Takes a report's series (cumulative values of the series that changed since the last one).
    pub fn apply(&mut self, client_id: &str, families: Vec<(Desc, Vec<SeriesData>)>) {
        let worker = Arc::make_mut(self.workers.entry(client_id.to_string()).or_default());
        worker.live = true;
        for (desc, series) in families {
            let stored = worker.families.entry(desc.name).or_default();
            for s in series {
                let key = series_key(&s.labels);
                let value = s.value.cumulative_after(stored.get(&key).map(|r| &r.last));
                match stored.get_mut(&key) {
                    Some(r) if matches!(desc.kind, Kind::Counter | Kind::Histogram(_)) => {
                        accumulate(&mut r.served.value, &r.last, &value);
                        r.last = value;
                    }
                    _ => {
                        let served = SeriesData {
                            labels: s.labels,
                            value: value.clone(),
                        };
                        stored.insert(key, Reported { served, last: value });
                    }
                }
            }
        }
    }

    /// Marks as live exactly the workers Locust has not marked missing.
    pub fn set_live(&mut self, live: &[String]) {
        for (id, w) in self.workers.iter_mut() {
            let is_live = live.contains(id);
            if w.live != is_live {
                Arc::make_mut(w).live = is_live;
            }
        }
    }

    pub fn clear(&mut self) {
        self.workers.clear();
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.workers.iter().map(|(id, w)| (id.clone(), w.clone())).collect())
    }
}

impl Snapshot {
    /// Merges the serving process's own series with every worker's, the way the family's kind says.
    pub fn merge(&self, desc: &Desc, local: Vec<SeriesData>) -> Vec<SeriesData> {
        let sources = std::iter::once((LOCAL_WORKER, true, local.iter().collect::<Vec<_>>())).chain(self.0.iter().map(
            |(id, w)| {
                let series = w
                    .families
                    .get(&desc.name)
                    .map(|m| m.values().map(|r| &r.served).collect())
                    .unwrap_or_default();
                (id.as_str(), w.live, series)
            },
        ));
        let mut merged: BTreeMap<Vec<String>, Merged> = BTreeMap::new();
        for (source, live, series) in sources {
            for s in series {
                let mut labels = s.labels.clone();
                match desc.kind {
                    Kind::Gauge(mode) => {
                        let ValueData::Scalar { value, updated } = s.value else {
                            continue;
                        };
                        if mode.live_only() && !live {
                            continue;
                        }
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
                    _ => merged.entry(labels).or_insert(Merged::Empty).add(&s.value),
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
    fn add(&mut self, v: &ValueData) {
        match (&mut *self, v) {
            (Merged::Empty | Merged::Unset(_), _) => *self = Merged::Value(v.clone()),
            (Merged::Value(ValueData::Scalar { value, .. }), ValueData::Scalar { value: x, .. }) => *value += x,
            (
                Merged::Value(ValueData::Histogram { counts, sum, native }),
                ValueData::Histogram {
                    counts: c,
                    sum: s,
                    native: n,
                },
            ) if counts.len() == c.len() => {
                counts.iter_mut().zip(c).for_each(|(a, b)| *a += b);
                *sum += s;
                // Native buckets merge exactly, but only if every process has them.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(labels: &[&str], value: f64, updated: f64) -> SeriesData {
        SeriesData {
            labels: labels.iter().map(|s| s.to_string()).collect(),
            value: ValueData::Scalar { value, updated },
        }
    }

    fn desc(kind: Kind) -> Desc {
        Desc::new("m", "h", kind, vec!["l".into()]).unwrap()
    }

    #[test]
    fn counters_sum_over_all_workers_even_missing_ones() {
        let d = desc(Kind::Counter);
        let mut w = Workers::default();
        w.apply("a", vec![(d.clone(), vec![scalar(&["x"], 2.0, 0.0)])]);
        w.apply(
            "b",
            vec![(d.clone(), vec![scalar(&["x"], 3.0, 0.0), scalar(&["y"], 1.0, 0.0)])],
        );
        w.set_live(&["a".to_string()]);
        let m = w.snapshot().merge(&d, vec![scalar(&["x"], 1.0, 0.0)]);
        assert_eq!(m, vec![scalar(&["x"], 6.0, 0.0), scalar(&["y"], 1.0, 0.0)]);
    }

    #[test]
    fn gauges_follow_their_mode() {
        let mut w = Workers::default();
        let g = |mode| desc(Kind::Gauge(mode));
        w.apply("a", vec![(g(GaugeMode::Sum), vec![scalar(&["x"], 2.0, 10.0)])]);
        w.apply("b", vec![(g(GaugeMode::Sum), vec![scalar(&["x"], 5.0, 5.0)])]);
        let never_set = vec![scalar(&["x"], 0.0, 0.0)];
        let value = |w: &Workers, mode| match &w.snapshot().merge(&g(mode), never_set.clone())[..] {
            [SeriesData {
                value: ValueData::Scalar { value, .. },
                ..
            }] => *value,
            other => panic!("{other:?}"),
        };
        assert_eq!(value(&w, GaugeMode::LiveSum), 7.0);
        assert_eq!(value(&w, GaugeMode::Min), 2.0);
        assert_eq!(value(&w, GaugeMode::Max), 5.0);
        assert_eq!(value(&w, GaugeMode::MostRecent), 2.0);
        w.set_live(&["b".to_string()]);
        assert_eq!(value(&w, GaugeMode::LiveSum), 5.0);
        assert_eq!(value(&w, GaugeMode::Sum), 7.0);
        let all = w.snapshot().merge(&g(GaugeMode::All), never_set.clone());
        assert_eq!(all.len(), 2, "the never-set local series is not shown");
        assert_eq!(all[0].labels, vec!["x".to_string(), "a".to_string()]);
    }

    #[test]
    fn a_worker_series_that_went_back_keeps_the_master_counter_growing() {
        let d = desc(Kind::Counter);
        let mut w = Workers::default();
        for reported in [10.0, 12.0, 1.0, 3.0] {
            w.apply("a", vec![(d.clone(), vec![scalar(&["x"], reported, 0.0)])]);
        }
        assert_eq!(w.snapshot().merge(&d, vec![]), vec![scalar(&["x"], 15.0, 0.0)]);
        let g = desc(Kind::Gauge(GaugeMode::Sum));
        w.apply("a", vec![(g.clone(), vec![scalar(&["x"], 10.0, 1.0)])]);
        w.apply("a", vec![(g.clone(), vec![scalar(&["x"], 1.0, 2.0)])]);
        assert_eq!(
            w.snapshot().merge(&g, vec![]),
            vec![scalar(&["x"], 1.0, 2.0)],
            "gauges just follow"
        );
    }

    #[test]
    fn later_reports_replace_earlier_values() {
        let d = desc(Kind::Histogram([1.0].into()));
        let h = |c: Vec<u64>, sum| SeriesData {
            labels: vec!["x".into()],
            value: ValueData::Histogram {
                counts: c,
                sum,
                native: None,
            },
        };
        let mut w = Workers::default();
        w.apply("a", vec![(d.clone(), vec![h(vec![1, 0], 0.5)])]);
        w.apply("a", vec![(d.clone(), vec![h(vec![2, 1], 3.0)])]);
        assert_eq!(
            w.snapshot().merge(&d, vec![h(vec![1, 1], 2.0)]),
            vec![h(vec![3, 2], 5.0)]
        );
    }
}
