//! A registry: its families, the workers' reports, and what changed since the last report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::cap::LabelCap;
use super::family::{series_key, AnyFamily, Desc, Family};
use super::names::check_label_names;
use super::series::{MetricType, ReportedSeries, SeriesData, ValueData};
use super::workers::Workers;
use crate::errors::{ExporterError, Result};

/// Families with their merged series, in name order: what a scrape renders.
pub type Collected = Vec<(Desc, Vec<SeriesData>)>;

/// Families with the series a worker reported, as read from its report.
pub type Report<'a> = Vec<(Desc, Vec<ReportedSeries<'a>>)>;

#[derive(Default)]
pub struct Registry {
    families: RwLock<BTreeMap<String, AnyFamily>>,
    workers: Mutex<Workers>,
    /// On a worker: the values last sent to the master, so reports carry only changes.
    sent: Mutex<HashMap<(String, String), ValueData>>,
    /// On a worker: how many reports were made (every `FULL_REPORT_EVERY`th carries every series).
    reports: AtomicU64,
    /// Labels added to every sample at render (the run's identity, given by option).
    const_labels: RwLock<Vec<(String, String)>>,
    /// The cap on request names, applied to what this process records and to workers' reports.
    label_cap: RwLock<Option<Arc<LabelCap>>>,
    /// The size of the last text rendering and an eighth: the next one is allocated at that size,
    /// so a large page is not copied over and over as it grows.
    render_size: AtomicUsize,
}

/// One report in this many carries every series: once a minute at Locust's 3 s report interval.
const FULL_REPORT_EVERY: u64 = 20;

impl Registry {
    /// Registers a new family of `M` (`desc` being of its kind); its names must not clash with any
    /// registered family's samples.
    pub fn register<M: MetricType>(&self, desc: Desc) -> Result<Arc<Family<M>>> {
        if !M::is_kind(&desc.kind) {
            return Err(ExporterError::Internal(format!(
                "{} registered as another kind",
                desc.name
            )));
        }
        let family = Arc::new(Family::new(desc));
        self.insert(M::erase(family.clone()))?;
        Ok(family)
    }

    /// The family of `M` with exactly this descriptor, registered if new (the built-in families).
    pub fn get_or_register<M: MetricType>(&self, desc: Desc) -> Result<Arc<Family<M>>> {
        if let Some(f) = self.families.read().get(&desc.name) {
            return match M::typed(f) {
                Some(f) if f.desc == desc => Ok(f.clone()),
                _ => Err(ExporterError::Duplicate(desc.name)),
            };
        }
        self.register(desc)
    }

    /// Registers `desc` in place of the family of `M` of the same name (whose series are dropped).
    pub fn replace<M: MetricType>(&self, desc: Desc) -> Result<Arc<Family<M>>> {
        let old = self.families.write().remove(&desc.name);
        self.register(desc).inspect_err(|_| {
            if let Some(old) = old {
                self.families.write().insert(old.desc().name.clone(), old);
            }
        })
    }

    /// A family reported by a worker: known if registered with exactly this descriptor, else new.
    fn get_or_register_reported(&self, desc: &Desc) -> Result<()> {
        match self.families.read().get(&desc.name) {
            Some(f) if f.desc() == desc => return Ok(()),
            Some(_) => return Err(ExporterError::Duplicate(desc.name.clone())),
            None => {}
        }
        self.insert(AnyFamily::new(desc.clone()))
    }

    /// Adds a family unless its labels clash with the constant ones or its names with a registered
    /// family's samples.
    fn insert(&self, family: AnyFamily) -> Result<()> {
        let desc = family.desc();
        // Locks in one order, families then constant labels, here and in `set_const_labels`: neither
        // can slip a clash in between the other's check and its write.
        let mut families = self.families.write();
        check_const_label_clash(&self.const_labels.read(), [desc])?;
        let taken: HashSet<String> = families.values().flat_map(|f| f.desc().exposed_names()).collect();
        if let Some(clash) = desc.exposed_names().into_iter().find(|n| taken.contains(n)) {
            return Err(ExporterError::Duplicate(clash));
        }
        let name = desc.name.clone();
        families.insert(name, family);
        Ok(())
    }

    /// Sets the labels added to every sample; they may not clash with any family's label names.
    pub fn set_const_labels(&self, labels: Vec<(String, String)>) -> Result<()> {
        let names: Vec<String> = labels.iter().map(|(n, _)| n.clone()).collect();
        check_label_names(&names, &["le", "worker"])?;
        let families = self.families.read();
        check_const_label_clash(&labels, families.values().map(AnyFamily::desc))?;
        *self.const_labels.write() = labels;
        Ok(())
    }

    pub fn const_labels(&self) -> Vec<(String, String)> {
        self.const_labels.read().clone()
    }

    /// The registry's label cap, made by `make` on first use.
    pub fn label_cap(&self, make: impl FnOnce() -> LabelCap) -> Arc<LabelCap> {
        self.label_cap.write().get_or_insert_with(|| Arc::new(make())).clone()
    }

    /// The capacity to allocate for a text rendering, and the size of the one just made.
    pub fn render_size_hint(&self) -> usize {
        self.render_size.load(Ordering::Relaxed).max(4096)
    }

    pub fn note_render_size(&self, len: usize) {
        self.render_size.store(len + len / 8, Ordering::Relaxed);
    }

    pub fn families(&self) -> Vec<AnyFamily> {
        self.families.read().values().cloned().collect()
    }

    /// Everything to render: own series merged with the workers' reports.
    pub fn collect(&self) -> Collected {
        let families = self.families();
        let workers = self.workers.lock().snapshot();
        families
            .iter()
            .map(|f| (f.desc().clone(), workers.merge(f.desc(), f.data())))
            .collect()
    }

    /// On a worker: the series whose values changed since the previous call, and every series
    /// in one call of `FULL_REPORT_EVERY`, so that a report Locust failed to deliver, or a master
    /// that restarted, is caught up with.
    pub fn changes(&self) -> Collected {
        let mut sent = self.sent.lock();
        if self.reports.fetch_add(1, Ordering::Relaxed) % FULL_REPORT_EVERY == FULL_REPORT_EVERY - 1 {
            sent.clear();
        }
        let mut out = Vec::new();
        for f in self.families() {
            let mut changed = Vec::new();
            for data in f.data() {
                let key = (f.desc().name.clone(), series_key(&data.labels));
                let previous = sent.get(&key);
                if previous != Some(&data.value) {
                    let shipped = SeriesData {
                        value: data.value.for_report(previous),
                        labels: data.labels,
                    };
                    sent.insert(key, data.value);
                    changed.push(shipped);
                }
            }
            if !changed.is_empty() {
                out.push((f.desc().clone(), changed));
            }
        }
        out
    }

    /// On the master: stores a worker's report, learning families defined only on workers.
    /// Families the master defines differently (other buckets, labels or kind) cannot be merged:
    /// they are left out, and named in the error, the rest of the report being taken.
    pub fn apply_report(&self, client_id: &str, families: Report) -> Result<()> {
        let (accepted, refused): (Report, Report) = families
            .into_iter()
            .partition(|(desc, _)| self.get_or_register_reported(desc).is_ok());
        let cap = self.label_cap.read().clone();
        self.workers.lock().apply(client_id, accepted, cap.as_deref());
        if refused.is_empty() {
            Ok(())
        } else {
            Err(ExporterError::ReportMismatch(
                refused.into_iter().map(|(d, _)| d.name).collect(),
            ))
        }
    }

    pub fn set_live_workers(&self, live: &[String]) {
        self.workers.lock().set_live(live);
    }

    /// In a forked child: start from zero, keeping families and the handles Python holds.
    pub fn reset_after_fork(&self) {
        self.families().iter().for_each(AnyFamily::reset);
        self.workers.lock().clear();
        self.sent.lock().clear();
        if let Some(cap) = self.label_cap.read().as_ref() {
            cap.reset();
        }
    }
}

/// A report as the master reads it, made from the series as a worker has them.
#[cfg(test)]
pub fn as_report(families: &Collected) -> Report<'_> {
    families
        .iter()
        .map(|(desc, series)| {
            let series = series
                .iter()
                .map(|s| ReportedSeries {
                    labels: s.labels.iter().map(String::as_str).collect(),
                    value: s.value.clone(),
                })
                .collect();
            (desc.clone(), series)
        })
        .collect()
}

fn check_const_label_clash<'a>(labels: &[(String, String)], descs: impl IntoIterator<Item = &'a Desc>) -> Result<()> {
    for desc in descs {
        if let Some((name, _)) = labels.iter().find(|(n, _)| desc.label_names.contains(n)) {
            return Err(ExporterError::ConstLabelClash {
                label: name.clone(),
                metric: desc.name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::family::{GaugeMode, Kind};
    use super::super::series::{Counter, Gauge, Histogram};
    use super::*;

    fn counter(name: &str) -> Desc {
        Desc::new(name, "h", Kind::Counter, vec![]).unwrap()
    }

    #[test]
    fn clashes_are_refused_and_leave_no_trace() {
        let r = Registry::default();
        r.register::<Counter>(counter("x")).unwrap();
        for clash in ["x", "x_total"] {
            assert!(matches!(
                r.register::<Counter>(counter(clash)),
                Err(ExporterError::Duplicate(_))
            ));
        }
        let gauge = Desc::new("x_created", "h", Kind::Gauge(GaugeMode::Sum), vec![]).unwrap();
        assert!(r.register::<Gauge>(gauge).is_err());
        assert_eq!(r.families().len(), 1);
        assert!(r.get_or_register::<Counter>(counter("x")).is_ok());
        assert!(
            r.get_or_register::<Gauge>(counter("x")).is_err(),
            "found only as the type it was registered as"
        );
    }

    #[test]
    fn const_labels_may_not_clash() {
        let r = Registry::default();
        r.register::<Counter>(Desc::new("c", "h", Kind::Counter, vec!["name".into()]).unwrap())
            .unwrap();
        let pair = |n: &str| vec![(n.to_string(), "v".to_string())];
        assert!(r.set_const_labels(pair("name")).is_err());
        assert!(r.set_const_labels(pair("bad-name")).is_err());
        r.set_const_labels(pair("run")).unwrap();
        assert!(r
            .register::<Counter>(Desc::new("d", "h", Kind::Counter, vec!["run".into()]).unwrap())
            .is_err_and(|e| e.to_string() == "constant label \"run\" is also a label of d"));
        assert_eq!(r.const_labels(), pair("run"));
    }

    #[test]
    fn reports_of_families_defined_differently_are_refused() {
        let r = Registry::default();
        let master = Desc::new("h", "h", Kind::Histogram([1.0].into()), vec![]).unwrap();
        r.register::<Histogram>(master).unwrap();
        let worker = Desc::new("h", "h", Kind::Histogram([1.0, 2.0].into()), vec![]).unwrap();
        let only_worker = counter("w");
        let data = |d: &Desc| {
            let value = match d.kind {
                Kind::Counter => ValueData::Scalar {
                    value: 1.0,
                    updated: 0.0,
                },
                _ => ValueData::Histogram {
                    counts: vec![1, 1, 1],
                    sum: 3.0,
                    native: None,
                },
            };
            (d.clone(), vec![SeriesData { labels: vec![], value }])
        };
        let err = r
            .apply_report("a", as_report(&vec![data(&worker), data(&only_worker)]))
            .unwrap_err();
        assert!(matches!(err, ExporterError::ReportMismatch(names) if names == vec!["h".to_string()]));
        let collected = r.collect();
        let hist = &collected.iter().find(|(d, _)| d.name == "h").unwrap().1;
        assert!(
            hist.iter().all(|s| s.value != data(&worker).1[0].value),
            "nothing of the worker's h"
        );
        let w = &collected.iter().find(|(d, _)| d.name == "w").unwrap().1;
        assert_eq!(
            w.len(),
            1,
            "the rest of the report is taken, families new to the master included"
        );
    }

    #[test]
    fn replace_swaps_the_definition() {
        let r = Registry::default();
        r.register::<Histogram>(Desc::new("h", "h", Kind::Histogram([1.0].into()), vec![]).unwrap())
            .unwrap();
        let new = Desc::new("h", "h", Kind::Histogram([1.0, 2.0].into()), vec![]).unwrap();
        assert_eq!(r.replace::<Histogram>(new.clone()).unwrap().desc, new);
        assert_eq!(r.families().len(), 1);
    }

    #[test]
    fn changes_carry_only_what_moved() {
        let r = Registry::default();
        let f = r.register::<Counter>(counter("c")).unwrap();
        assert_eq!(r.changes().len(), 1, "first report carries everything");
        assert!(r.changes().is_empty());
        for _ in 2..FULL_REPORT_EVERY - 1 {
            assert!(r.changes().is_empty());
        }
        assert_eq!(r.changes().len(), 1, "a full report now and then");
        assert!(r.changes().is_empty());
        f.child::<&str>(&[]).unwrap().inc(2.0);
        let ch = r.changes();
        assert_eq!(
            ch[0].1[0].value,
            ValueData::Scalar {
                value: 2.0,
                updated: 0.0
            }
        );
    }
}
