//! What the master keeps of each Locust worker's reports.
//!
//! Counters and histograms are folded into the master's totals as reports arrive, so a report costs
//! O(series it carries) and a scrape O(series), whatever the number of workers. Each reported series
//! has a slot, shared by every worker that reports it; per worker, only the last cumulative value in
//! each slot (to compute the growth and see a reset) and the gauges (for the gauge modes) are kept.
//! Reports are untrusted: what they may add is bounded (the name cap, each family's `max_series`, the
//! workers whose gauges are kept), and a worker Locust removed is forgotten after a grace period.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::snapshot::{Gauges, Snapshot, StoredGauge};
use super::wire::ReportedSeries;
use crate::metrics::{
    push_series_key, series_key, AnyFamily, Grow, Kind, LabelCap, NativeConfig, NativeSnapshot, SeriesData, ValueData,
    OVERFLOW,
};

/// Workers whose gauges the master keeps; the gauges of workers past it are left out of the merge.
pub const MAX_GAUGE_WORKERS: usize = 1_000;
/// Seconds a worker Locust no longer lists is remembered: its gauges go then, and what it reported
/// stays in the totals.
pub const FORGET_AFTER: f64 = 60.0;
/// Forgotten workers remembered as such (a report from one counts from there, not from zero).
const FORGOTTEN_KEPT: usize = 10_000;

/// A counter or histogram family's totals: the sum of every worker's series (atomics: a scrape
/// reads them while reports add to them), and the slot of each reported series key.
struct Totals {
    family: AnyFamily,
    /// Series key -> index in `slots`.
    slot_of: HashMap<String, usize>,
    slots: Vec<Arc<dyn Grow>>,
}

struct Worker {
    live: bool,
    /// When (master's clock) Locust stopped listing it.
    gone_since: Option<f64>,
    /// Its first report after it was forgotten: values are taken as the base of its growth, not as growth.
    baseline: bool,
    /// Counters and histograms: family name -> the last value reported, by slot.
    last: HashMap<String, Vec<Option<ValueData>>>,
    /// Series whose name the master's cap sent to the overflow name: family name -> series key -> the
    /// last value reported. They have no slot; their names are at most the cap's.
    overflowed: HashMap<String, HashMap<String, ValueData>>,
    overflowed_names: HashSet<String>,
    /// Shared with scrapes, which merge them without the lock; a report arriving meanwhile copies on
    /// write. `None` for a worker past `MAX_GAUGE_WORKERS`.
    gauges: Option<Arc<Gauges>>,
}

#[derive(Default)]
pub struct Master {
    workers: BTreeMap<String, Worker>,
    /// Counters and histograms, by family name.
    totals: HashMap<String, Totals>,
    forgotten: VecDeque<String>,
    /// When the last report was received: each one is later, even within the clock's resolution, so that
    /// `mostrecent` tells apart two reports applied in the same microsecond.
    received: f64,
}

/// What a report added, and what it could not.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    pub series_left_out: usize,
    /// The first reason a series was left out.
    pub why: Option<&'static str>,
}

impl Applied {
    fn leave_out(&mut self, n: usize, why: &'static str) {
        self.series_left_out += n;
        self.why.get_or_insert(why);
    }
}

impl Totals {
    /// The totals of a family as the master has it (its `max_series`, its own native settings).
    fn new(family: &AnyFamily, native: bool) -> Self {
        let mut desc = family.desc().clone();
        if native && desc.native.is_none() {
            desc = desc.with_native(NativeConfig::default());
        }
        let totals = AnyFamily::new(desc);
        totals.set_max_series(family.max_series());
        Totals {
            family: totals,
            slot_of: HashMap::new(),
            slots: Vec::new(),
        }
    }

    /// The slot of `labels`, made on first sight (`None` past the family's `max_series`).
    fn slot(&mut self, key: &str, labels: &[&str]) -> Option<usize> {
        if let Some(i) = self.slot_of.get(key) {
            return Some(*i);
        }
        let total = self.family.growing_child(labels)?.ok()?;
        self.slots.push(total);
        self.slot_of.insert(key.to_string(), self.slots.len() - 1);
        Some(self.slots.len() - 1)
    }
}

/// Adds what `value` grew by since `held` to `total`, and holds `value` (with cumulative native buckets)
/// from now on. The growth is not added for a `baseline`.
fn grow(total: &dyn Grow, held: &mut Option<ValueData>, value: ValueData, baseline: bool) {
    // Native buckets shipped as increments: cumulative again, from the value held.
    let value = cumulative_after(value, held.as_ref());
    // Most series of a periodic full report are unchanged: their total is not even read.
    if held.as_ref() != Some(&value) {
        if !baseline {
            total.add_growth(held.as_ref(), &value);
        }
        *held = Some(value);
    }
}

impl Master {
    /// Takes a report's series (cumulative values of the series that changed since the last one), each
    /// family with the master's own family of that name. Past `cap`, series with new values of its label
    /// are added to the overflow value's series. `now` is the master's clock: a gauge's time is when the
    /// master received it, so that `mostrecent` does not depend on the workers' clocks.
    pub fn apply(
        &mut self,
        client_id: &str,
        families: Vec<(AnyFamily, Vec<ReportedSeries>)>,
        cap: Option<&LabelCap>,
        now: f64,
    ) -> Applied {
        let mut applied = Applied::default();
        // The next float up (`received` is a non-negative Unix time; `f64::next_up` is past the MSRV).
        let now = now.max(f64::from_bits(self.received.to_bits() + 1));
        self.received = now;
        let Master {
            workers,
            totals,
            forgotten,
            ..
        } = self;
        for (family, series) in families
            .iter()
            .filter(|(f, _)| !matches!(f.desc().kind, Kind::Gauge(_)))
        {
            let desc = family.desc();
            if totals.get(&desc.name).is_none_or(|t| t.family.desc() != desc) {
                // New, or defined anew (other buckets): the total starts again from what workers report.
                let native = series
                    .iter()
                    .any(|s| matches!(&s.value, ValueData::Histogram { native: Some(_), .. }));
                totals.insert(desc.name.clone(), Totals::new(family, native));
                workers.values_mut().for_each(|w| {
                    w.last.remove(&desc.name);
                    w.overflowed.remove(&desc.name);
                });
            }
        }
        if !workers.contains_key(client_id) {
            let keeps_gauges = workers.values().filter(|w| w.gauges.is_some()).count() < MAX_GAUGE_WORKERS;
            let was_forgotten = forgotten.iter().position(|f| f == client_id);
            if let Some(i) = was_forgotten {
                forgotten.remove(i);
            }
            let worker = Worker {
                live: true,
                gone_since: None,
                baseline: was_forgotten.is_some(),
                last: HashMap::new(),
                overflowed: HashMap::new(),
                overflowed_names: HashSet::new(),
                gauges: keeps_gauges.then(Arc::default),
            };
            workers.insert(client_id.to_string(), worker);
        }
        let Some(worker) = workers.get_mut(client_id) else {
            return applied;
        };
        worker.live = true;
        let baseline = std::mem::take(&mut worker.baseline);
        // One key buffer for the report: a key is allocated only for a series new to the master.
        let mut key = String::new();
        for (family, series) in families {
            let desc = family.desc();
            let Some(total) = totals
                .get_mut(&desc.name)
                .filter(|_| !matches!(desc.kind, Kind::Gauge(_)))
            else {
                let Some(gauges) = worker.gauges.as_mut() else {
                    applied.leave_out(series.len(), "the gauges of more workers than the master keeps");
                    continue;
                };
                let stored = Arc::make_mut(gauges).entry(desc.name.clone()).or_default();
                let max = family.max_series();
                for s in series {
                    let ValueData::Scalar { value, updated: stamp } = s.value else {
                        continue;
                    };
                    key.clear();
                    push_series_key(&mut key, &s.labels);
                    let received = match stored.get(key.as_str()) {
                        Some(old) if old.stamp == stamp => old.received(),
                        None if max != 0 && stored.len() >= max => {
                            applied.leave_out(1, "more series than the family's max_series");
                            continue;
                        }
                        _ if stamp == 0.0 => 0.0,
                        _ => now,
                    };
                    let labels = s.labels.iter().map(|l| l.to_string()).collect();
                    let data = SeriesData {
                        labels,
                        value: ValueData::Scalar {
                            value,
                            updated: received,
                        },
                    };
                    stored.insert(key.clone(), StoredGauge { stamp, data });
                }
                continue;
            };
            let capped = cap.and_then(|c| Some((c, c.position(&desc.name, &desc.label_names)?)));
            let counted = capped.is_some_and(|(c, _)| c.counted == desc.name);
            let last = worker.last.entry(desc.name.clone()).or_default();
            for s in series {
                let mut labels = s.labels;
                key.clear();
                push_series_key(&mut key, &labels);
                let overflows = !total.slot_of.contains_key(&key)
                    && capped.is_some_and(|(c, i)| labels.get(i).is_some_and(|v| c.admit(v) != *v));
                if let (true, Some((cap, i))) = (overflows, capped) {
                    // Past the cap: added to the overflow name's series, with no slot of its own.
                    let name = labels[i];
                    if !worker.overflowed_names.contains(name) {
                        if worker.overflowed_names.len() >= cap.max() {
                            applied.leave_out(1, "more request names than the cap from one worker");
                            continue;
                        }
                        worker.overflowed_names.insert(name.to_string());
                    }
                    labels[i] = OVERFLOW;
                    let Some(j) = total.slot(&series_key(&labels), &labels) else {
                        applied.leave_out(1, "more series than the family's max_series");
                        continue;
                    };
                    let held = worker.overflowed.entry(desc.name.clone()).or_default();
                    let mut previous = held.remove(key.as_str());
                    let before = previous.clone();
                    grow(&*total.slots[j], &mut previous, s.value, baseline);
                    if let (true, Some(value)) = (counted && !baseline, &previous) {
                        cap.overflowed.add_growth(before.as_ref(), value);
                    }
                    held.extend(previous.map(|v| (key.clone(), v)));
                    continue;
                }
                let Some(i) = total.slot(&key, &labels) else {
                    applied.leave_out(1, "more series than the family's max_series");
                    continue;
                };
                if last.len() <= i {
                    last.resize(i + 1, None);
                }
                if let (Some(held), Some(slot)) = (last.get_mut(i), total.slots.get(i)) {
                    grow(&**slot, held, s.value, baseline);
                }
            }
        }
        applied
    }

    /// Marks as live exactly the workers Locust has not marked missing, and forgets those it has not
    /// `listed` for `FORGET_AFTER` seconds (none, without a list): their gauges go, what they reported
    /// stays in the totals.
    pub fn set_workers(&mut self, live: &[String], listed: Option<&[String]>, now: f64) {
        let live: HashSet<&str> = live.iter().map(String::as_str).collect();
        let listed: Option<HashSet<&str>> = listed.map(|l| l.iter().map(String::as_str).collect());
        let mut gone = Vec::new();
        for (id, w) in self.workers.iter_mut() {
            w.live = live.contains(id.as_str());
            if listed.as_ref().is_none_or(|l| l.contains(id.as_str())) || w.live {
                w.gone_since = None;
            } else if now - *w.gone_since.get_or_insert(now) >= FORGET_AFTER {
                gone.push(id.clone());
            }
        }
        for id in gone {
            self.workers.remove(&id);
            if self.forgotten.len() == FORGOTTEN_KEPT {
                self.forgotten.pop_front();
            }
            self.forgotten.push_back(id);
        }
    }

    pub fn clear(&mut self) {
        *self = Master::default();
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            gauges: self
                .workers
                .iter()
                .filter_map(|(id, w)| Some((id.clone(), w.live, w.gauges.clone()?)))
                .collect(),
            totals: self.totals.iter().map(|(n, t)| (n.clone(), t.family.clone())).collect(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    use crate::distributed::wire::as_report;
    use crate::metrics::{Collected, Counter, Desc, Family, GaugeMode};

    thread_local! {
        /// The master's clock in these tests: one second more at each report.
        static CLOCK: Cell<f64> = const { Cell::new(1000.0) };
    }

    fn tick() -> f64 {
        CLOCK.with(|c| {
            c.set(c.get() + 1.0);
            c.get()
        })
    }

    fn with_families(families: &Collected) -> Vec<(AnyFamily, Vec<ReportedSeries<'_>>)> {
        as_report(families)
            .into_iter()
            .map(|(d, s)| (AnyFamily::new(d), s))
            .collect()
    }

    impl Master {
        fn take(&mut self, client_id: &str, families: Collected) -> Applied {
            self.apply(client_id, with_families(&families), None, tick())
        }

        fn set_live(&mut self, live: &[String]) {
            self.set_workers(live, None, tick());
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
        assert_eq!(
            value(&w, GaugeMode::MostRecent),
            5.0,
            "received last, whatever the workers' clocks say"
        );
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
        let merged = w.snapshot().merge(&g, vec![]);
        assert!(
            matches!(
                merged[..],
                [SeriesData {
                    value: ValueData::Scalar { value: 1.0, .. },
                    ..
                }]
            ),
            "gauges just follow: {merged:?}"
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

    fn counter_values(w: &Master, d: &Desc) -> Vec<(String, f64)> {
        w.snapshot()
            .merge(d, vec![])
            .into_iter()
            .map(|s| match s.value {
                ValueData::Scalar { value, .. } => (s.labels.join(","), value),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_family_keeps_its_max_series_on_the_master() {
        let d = desc(Kind::Counter);
        let family = AnyFamily::new(d.clone());
        family.set_max_series(2);
        let report: Collected = vec![(
            d.clone(),
            (0..5).map(|i| scalar(&[&format!("v{i}")], 1.0, 0.0)).collect(),
        )];
        let mut w = Master::default();
        let families = as_report(&report)
            .into_iter()
            .map(|(_, s)| (family.clone(), s))
            .collect();
        let applied = w.apply("a", families, None, tick());
        assert_eq!(applied.series_left_out, 3);
        assert_eq!(counter_values(&w, &d).len(), 2);
    }

    #[test]
    fn past_the_name_cap_series_overflow_without_a_slot_and_a_worker_brings_at_most_the_cap() {
        let d = Desc::new("m", "h", Kind::Counter, vec!["l".into()]).unwrap();
        let overflowed = Family::<Counter>::new(Desc::new("o", "h", Kind::Counter, vec![]).unwrap()).detached();
        let cap = LabelCap::new("l", vec!["m".into()], "m", overflowed.clone(), 2);
        let mut w = Master::default();
        let report = |names: &[&str], value| -> Collected {
            vec![(d.clone(), names.iter().map(|n| scalar(&[n], value, 0.0)).collect())]
        };
        let a = report(&["x", "y", "z"], 2.0);
        assert_eq!(w.apply("a", with_families(&a), Some(&cap), tick()), Applied::default());
        let b = report(&["p", "q", "r"], 1.0);
        let applied = w.apply("b", with_families(&b), Some(&cap), tick());
        assert_eq!(applied.series_left_out, 1, "b's third name past the cap");
        let a = report(&["x", "y", "z"], 5.0);
        w.apply("a", with_families(&a), Some(&cap), tick());
        let got = counter_values(&w, &d);
        assert_eq!(got, vec![("<other>".into(), 7.0), ("x".into(), 5.0), ("y".into(), 5.0)]);
        assert_eq!(w.totals["m"].slots.len(), 3, "no slot for an overflowed name");
        let counted = ValueData::Scalar {
            value: 7.0,
            updated: 0.0,
        };
        assert_eq!(overflowed.data().value, counted);
    }

    #[test]
    fn the_gauges_of_workers_past_the_bound_are_left_out() {
        let g = desc(Kind::Gauge(GaugeMode::Sum));
        let mut w = Master::default();
        for i in 0..=MAX_GAUGE_WORKERS {
            let applied = w.take(&format!("w{i}"), vec![(g.clone(), vec![scalar(&["x"], 1.0, 1.0)])]);
            assert_eq!(applied.series_left_out, usize::from(i == MAX_GAUGE_WORKERS));
        }
        let merged = w.snapshot().merge(&g, vec![]);
        assert!(matches!(merged[0].value, ValueData::Scalar { value, .. } if value == MAX_GAUGE_WORKERS as f64));
    }

    #[test]
    fn a_worker_locust_removed_is_forgotten_after_the_grace_period_and_its_counts_stay() {
        let (c, g) = (desc(Kind::Counter), desc(Kind::Gauge(GaugeMode::Sum)));
        let mut w = Master::default();
        let report = |n: f64| {
            vec![
                (c.clone(), vec![scalar(&["x"], n, 0.0)]),
                (g.clone(), vec![scalar(&["x"], n, n)]),
            ]
        };
        w.take("a", report(3.0));
        let none: [String; 0] = [];
        w.set_workers(&none, Some(&["a".to_string()]), 0.0);
        w.set_workers(&none, Some(&none), 10.0);
        w.set_workers(&none, Some(&none), 10.0 + FORGET_AFTER - 1.0);
        assert_eq!(w.workers.len(), 1, "within the grace period");
        w.set_workers(&none, Some(&none), 10.0 + FORGET_AFTER);
        assert_eq!(w.workers.len(), 0);
        assert!(w.snapshot().merge(&g, vec![]).is_empty(), "its gauges are gone");
        assert_eq!(counter_values(&w, &c), vec![("x".into(), 3.0)], "its counts stay");
        // Back: its next report is where its growth counts from, not growth itself.
        w.take("a", report(5.0));
        w.take("a", report(7.0));
        assert_eq!(counter_values(&w, &c), vec![("x".into(), 5.0)]);
    }

    #[test]
    fn mostrecent_goes_by_arrival_even_within_one_clock_tick() {
        let g = desc(Kind::Gauge(GaugeMode::MostRecent));
        let mut w = Master::default();
        for (worker, value, stamp) in [("a", 1.0, 50.0), ("b", 2.0, 10.0)] {
            let report = vec![(g.clone(), vec![scalar(&["x"], value, stamp)])];
            w.apply(worker, with_families(&report), None, 7.0);
        }
        let merged = w.snapshot().merge(&g, vec![]);
        assert!(
            matches!(
                merged[..],
                [SeriesData {
                    value: ValueData::Scalar { value: 2.0, .. },
                    ..
                }]
            ),
            "b's, received last, though its clock is behind: {merged:?}"
        );
    }
}
