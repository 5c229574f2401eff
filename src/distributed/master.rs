//! What the master keeps of each Locust worker's reports, and how it merges with its own series.
//!
//! Counters and histograms are folded into the master's totals as reports arrive, so a report costs
//! O(series it carries) and a scrape O(series), whatever the number of workers. Each reported series
//! has a slot, shared by every worker that reports it; per worker, only the last cumulative value in
//! each slot (to compute the growth and see a reset) and the gauges (for the gauge modes) are kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::wire::Report;
use crate::metrics::{
    push_series_key, series_key, AnyFamily, Counter, Desc, GaugeMode, Grow, Kind, LabelCap, NativeConfig,
    NativeSnapshot, Series, SeriesData, ValueData, OVERFLOW,
};

/// Label value of the `worker` label for the serving process's own values (gauge mode `all`).
const LOCAL_WORKER: &str = "local";

/// Where a reported series adds its growth.
struct Slot {
    total: Arc<dyn Grow>,
    /// Requests recorded under the overflow name by the master's cap: where they are counted too.
    overflowed: Option<Arc<Series<Counter>>>,
}

/// A counter or histogram family's totals: the sum of every worker's series (atomics: a scrape
/// reads them while reports add to them), and the slot of each reported series key.
struct Totals {
    family: AnyFamily,
    /// Series key -> index in `slots`.
    slot_of: HashMap<String, usize>,
    slots: Vec<Slot>,
}

/// Family name -> series key -> the gauge as a worker last reported it.
type Gauges = HashMap<String, HashMap<String, SeriesData>>;

#[derive(Default)]
struct Worker {
    live: bool,
    /// Counters and histograms: family name -> the last value reported, by slot.
    last: HashMap<String, Vec<Option<ValueData>>>,
    /// Shared with scrapes, which merge them without the lock; a report arriving meanwhile copies on write.
    gauges: Arc<Gauges>,
}

#[derive(Default)]
pub struct Master {
    workers: BTreeMap<String, Worker>,
    /// Counters and histograms, by family name.
    totals: HashMap<String, Totals>,
}

/// The workers as they were when a scrape began.
pub struct Snapshot {
    gauges: Vec<(String, bool, Arc<Gauges>)>,
    totals: HashMap<String, AnyFamily>,
}

impl Totals {
    /// The slot of a reported series, made on first sight: the cap decides then, for good, whether
    /// it adds to its own series or to the overflow name's.
    fn slot(
        &mut self,
        key: &str,
        labels: &mut [&str],
        cap: Option<(&LabelCap, usize)>,
        counted: bool,
    ) -> Option<usize> {
        if let Some(i) = self.slot_of.get(key) {
            return Some(*i);
        }
        let mut overflowed = None;
        if let Some((cap, value)) = cap.and_then(|(c, i)| Some((c, labels.get_mut(i)?))) {
            if cap.admit(value) != *value {
                *value = OVERFLOW;
                overflowed = counted.then(|| cap.overflowed.clone());
            }
        }
        let total = self.family.growing_child(labels)?.ok()?;
        self.slots.push(Slot { total, overflowed });
        self.slot_of.insert(key.to_string(), self.slots.len() - 1);
        Some(self.slots.len() - 1)
    }
}

impl Master {
    /// Takes a report's series (cumulative values of the series that changed since the last one).
    /// Past `cap`, series with new values of its label are added to the overflow value's series.
    pub fn apply(&mut self, client_id: &str, families: Report, cap: Option<&LabelCap>) {
        let Master { workers, totals } = self;
        for (desc, series) in families.iter().filter(|(d, _)| !matches!(d.kind, Kind::Gauge(_))) {
            if totals.get(&desc.name).is_none_or(|t| t.family.desc() != desc) {
                // New, or defined anew (other buckets): the total starts again from what workers report.
                // Native buckets if the workers have them, at the resolution of the first reported.
                let native = series.iter().find_map(|s| match &s.value {
                    ValueData::Histogram { native: Some(n), .. } => Some(NativeConfig {
                        schema: n.schema,
                        zero_threshold: n.zero_threshold,
                        ..NativeConfig::default()
                    }),
                    _ => None,
                });
                let family = AnyFamily::new(match native {
                    Some(config) => desc.clone().with_native(config),
                    None => desc.clone(),
                });
                let fresh = Totals {
                    family,
                    slot_of: HashMap::new(),
                    slots: Vec::new(),
                };
                totals.insert(desc.name.clone(), fresh);
                workers.values_mut().for_each(|w| {
                    w.last.remove(&desc.name);
                });
            }
        }
        let worker = workers.entry(client_id.to_string()).or_default();
        worker.live = true;
        // One key buffer for the report: a key is allocated only for a series new to the master.
        let mut key = String::new();
        for (desc, series) in families {
            let Some(total) = totals
                .get_mut(&desc.name)
                .filter(|_| !matches!(desc.kind, Kind::Gauge(_)))
            else {
                let stored = Arc::make_mut(&mut worker.gauges).entry(desc.name).or_default();
                for s in series {
                    let labels = s.labels.iter().map(|l| l.to_string()).collect();
                    stored.insert(series_key(&s.labels), SeriesData { labels, value: s.value });
                }
                continue;
            };
            let capped = cap.and_then(|c| Some((c, c.position(&desc.name, &desc.label_names)?)));
            let counted = capped.is_some_and(|(c, _)| c.counted == desc.name);
            let last = worker.last.entry(desc.name).or_default();
            for s in series {
                let mut labels = s.labels;
                key.clear();
                push_series_key(&mut key, &labels);
                let Some(i) = total.slot(&key, &mut labels, capped, counted) else {
                    continue;
                };
                if last.len() <= i {
                    last.resize(i + 1, None);
                }
                let (Some(held), Some(slot)) = (last.get_mut(i), total.slots.get(i)) else {
                    continue;
                };
                // Native buckets shipped as increments: cumulative again, from the value held.
                let value = cumulative_after(s.value, held.as_ref());
                // Most series of a periodic full report are unchanged: their total is not even read.
                if held.as_ref() != Some(&value) {
                    slot.total.add_growth(held.as_ref(), &value);
                    if let Some(o) = &slot.overflowed {
                        o.add_growth(held.as_ref(), &value);
                    }
                    *held = Some(value);
                }
            }
        }
    }

    /// Marks as live exactly the workers Locust has not marked missing.
    pub fn set_live(&mut self, live: &[String]) {
        for (id, w) in self.workers.iter_mut() {
            w.live = live.contains(id);
        }
    }

    pub fn clear(&mut self) {
        self.workers.clear();
        self.totals.clear();
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            gauges: self
                .workers
                .iter()
                .map(|(id, w)| (id.clone(), w.live, w.gauges.clone()))
                .collect(),
            totals: self.totals.iter().map(|(n, t)| (n.clone(), t.family.clone())).collect(),
        }
    }
}

impl Snapshot {
    /// Merges the serving process's own series with the workers', the way the family's kind says.
    pub fn merge(&self, desc: &Desc, local: Vec<SeriesData>) -> Vec<SeriesData> {
        let mut merged: BTreeMap<Vec<String>, Merged> = BTreeMap::new();
        match desc.kind {
            Kind::Gauge(mode) => {
                let workers = self.gauges.iter().map(|(id, live, gauges)| {
                    let series = gauges.get(&desc.name).map(|m| m.values().collect()).unwrap_or_default();
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

/// On the master: a reported value with cumulative native buckets again, from the `last` value
/// reported for the series; without native buckets if there is nothing to add the increments to
/// (the master started after the worker's first report: the next full report brings them).
fn cumulative_after(mut value: ValueData, last: Option<&ValueData>) -> ValueData {
    if let ValueData::Histogram { native, .. } = &mut value {
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
    value
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
                counts.iter_mut().zip(c).for_each(|(a, b)| *a += b);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::wire::as_report;
    use crate::metrics::Collected;

    impl Master {
        fn take(&mut self, client_id: &str, families: Collected) {
            self.apply(client_id, as_report(&families), None);
        }
    }

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
        let mut w = Master::default();
        w.take("a", vec![(d.clone(), vec![scalar(&["x"], 2.0, 0.0)])]);
        w.take(
            "b",
            vec![(d.clone(), vec![scalar(&["x"], 3.0, 0.0), scalar(&["y"], 1.0, 0.0)])],
        );
        w.set_live(&["a".to_string()]);
        let m = w.snapshot().merge(&d, vec![scalar(&["x"], 1.0, 0.0)]);
        assert_eq!(m, vec![scalar(&["x"], 6.0, 0.0), scalar(&["y"], 1.0, 0.0)]);
    }

    #[test]
    fn gauges_follow_their_mode() {
        let mut w = Master::default();
        let g = |mode| desc(Kind::Gauge(mode));
        w.take("a", vec![(g(GaugeMode::Sum), vec![scalar(&["x"], 2.0, 10.0)])]);
        w.take("b", vec![(g(GaugeMode::Sum), vec![scalar(&["x"], 5.0, 5.0)])]);
        let never_set = vec![scalar(&["x"], 0.0, 0.0)];
        let value = |w: &Master, mode| match &w.snapshot().merge(&g(mode), never_set.clone())[..] {
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
        let mut w = Master::default();
        for reported in [10.0, 12.0, 1.0, 3.0] {
            w.take("a", vec![(d.clone(), vec![scalar(&["x"], reported, 0.0)])]);
        }
        assert_eq!(w.snapshot().merge(&d, vec![]), vec![scalar(&["x"], 15.0, 0.0)]);
        let g = desc(Kind::Gauge(GaugeMode::Sum));
        w.take("a", vec![(g.clone(), vec![scalar(&["x"], 10.0, 1.0)])]);
        w.take("a", vec![(g.clone(), vec![scalar(&["x"], 1.0, 2.0)])]);
        assert_eq!(
            w.snapshot().merge(&g, vec![]),
            vec![scalar(&["x"], 1.0, 2.0)],
            "gauges just follow"
        );
    }

    #[test]
    fn a_hundred_workers_merge_exactly_and_a_missing_one_keeps_its_counts() {
        let c = desc(Kind::Counter);
        let h = Desc::new("h", "h", Kind::Histogram([1.0, 2.0].into()), vec!["l".into()]).unwrap();
        let hist = |labels: &[&str], counts: Vec<u64>, sum| SeriesData {
            labels: labels.iter().map(|s| s.to_string()).collect(),
            value: ValueData::Histogram {
                counts,
                sum,
                native: None,
            },
        };
        let mut w = Master::default();
        let (mut expected_c, mut expected_h) = (0.0, [0u64; 3]);
        // Three rounds of cumulative reports; each worker reports only the series that changed.
        for round in 1..=3u64 {
            for id in 0..100u64 {
                let n = id * round;
                let counts = vec![n, 2 * n, id % 3];
                let mut families = vec![(h.clone(), vec![hist(&["x"], counts.clone(), n as f64)])];
                if id % 2 == 0 || round == 1 {
                    families.push((c.clone(), vec![scalar(&["x"], n as f64, 0.0), scalar(&["y"], 1.0, 0.0)]));
                }
                w.take(&format!("w{id}"), families);
                if round == 3 {
                    expected_c += if id % 2 == 0 { n as f64 } else { id as f64 };
                    expected_h.iter_mut().zip(&counts).for_each(|(e, c)| *e += c);
                }
            }
        }
        w.set_live(&(1..100).map(|i| format!("w{i}")).collect::<Vec<_>>());
        let merged = w.snapshot().merge(&c, vec![scalar(&["x"], 1.0, 0.0)]);
        assert_eq!(
            merged,
            vec![scalar(&["x"], expected_c + 1.0, 0.0), scalar(&["y"], 100.0, 0.0)]
        );
        let sum = (0..100).map(|i| 3 * i).sum::<u64>() as f64;
        assert_eq!(
            w.snapshot().merge(&h, vec![]),
            vec![hist(&["x"], expected_h.to_vec(), sum)]
        );
    }

    #[test]
    fn a_family_defined_anew_starts_its_total_again() {
        let old = Desc::new("h", "h", Kind::Histogram([1.0].into()), vec![]).unwrap();
        let new = Desc::new("h", "h", Kind::Histogram([1.0, 2.0].into()), vec![]).unwrap();
        let hist = |counts: Vec<u64>| SeriesData {
            labels: vec![],
            value: ValueData::Histogram {
                counts,
                sum: 1.0,
                native: None,
            },
        };
        let mut w = Master::default();
        w.take("a", vec![(old.clone(), vec![hist(vec![1, 1])])]);
        w.take("a", vec![(new.clone(), vec![hist(vec![1, 1, 1])])]);
        assert!(
            w.snapshot().merge(&old, vec![]).is_empty(),
            "the old layout is not served"
        );
        assert_eq!(w.snapshot().merge(&new, vec![]), vec![hist(vec![1, 1, 1])]);
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
        let mut w = Master::default();
        w.take("a", vec![(d.clone(), vec![h(vec![1, 0], 0.5)])]);
        w.take("a", vec![(d.clone(), vec![h(vec![2, 1], 3.0)])]);
        assert_eq!(
            w.snapshot().merge(&d, vec![h(vec![1, 1], 2.0)]),
            vec![h(vec![3, 2], 5.0)]
        );
    }
}
