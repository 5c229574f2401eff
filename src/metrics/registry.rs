//! A registry: its families, found by name, and the constant labels added to every sample.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::cap::LabelCap;
use super::desc::Desc;
use super::family::{AnyFamily, Family, Typed};
use super::names::check_label_names;
use crate::errors::{ExporterError, Result};

#[derive(Default)]
pub struct Registry {
    families: RwLock<Families>,
    /// Labels added to every sample at render (the run's identity, given by option).
    const_labels: RwLock<Vec<(String, String)>>,
    /// The cap on request names, applied to what this process records and to workers' reports.
    label_cap: RwLock<Option<Arc<LabelCap>>>,
    /// The size of the last text rendering and an eighth: the next one is allocated at that size,
    /// so a large page is not copied over and over as it grows.
    render_size: AtomicUsize,
}

/// Series a custom metric keeps at most unless told otherwise (`max_series=`), and a family learned from
/// workers' reports at most.
pub const DEFAULT_MAX_SERIES: usize = 10_000;

/// The families by name, and every sample name they may expose, kept as families come and go: a new
/// family's names are checked in time proportional to its own names, not to the registry's.
#[derive(Default)]
struct Families {
    by_name: BTreeMap<String, AnyFamily>,
    taken: HashSet<String>,
}

impl Families {
    fn remove(&mut self, name: &str) -> Option<AnyFamily> {
        let family = self.by_name.remove(name)?;
        family.desc().exposed_names().iter().for_each(|n| {
            self.taken.remove(n);
        });
        Some(family)
    }

    /// Adds `family`, whose sample names are `names`.
    fn insert(&mut self, family: AnyFamily, names: Vec<String>) {
        self.taken.extend(names);
        self.by_name.insert(family.desc().name.clone(), family);
    }
}

impl Registry {
    /// Registers a new family of `M` (`desc` being of its kind); its names must not clash with any
    /// registered family's samples.
    pub fn register<M: Typed>(&self, desc: Desc) -> Result<Arc<Family<M>>> {
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
    pub fn get_or_register<M: Typed>(&self, desc: Desc) -> Result<Arc<Family<M>>> {
        if let Some(f) = self.families.read().by_name.get(&desc.name) {
            return match M::typed(f) {
                Some(f) if f.desc == desc => Ok(f.clone()),
                _ => Err(ExporterError::Duplicate(desc.name)),
            };
        }
        self.register(desc)
    }

    /// Registers `desc` in place of the family of `M` of the same name (whose series are dropped).
    pub fn replace<M: Typed>(&self, desc: Desc) -> Result<Arc<Family<M>>> {
        let old = self.families.write().remove(&desc.name);
        self.register(desc).inspect_err(|_| {
            if let Some(old) = old {
                let names = old.desc().exposed_names();
                self.families.write().insert(old, names);
            }
        })
    }

    /// The family of a worker's report: the one registered with this descriptor, or else a new one, which
    /// keeps at most `DEFAULT_MAX_SERIES` series.
    pub fn learn(&self, desc: &Desc) -> Result<AnyFamily> {
        match self.families.read().by_name.get(&desc.name) {
            Some(f) if f.desc() == desc => return Ok(f.clone()),
            Some(_) => return Err(ExporterError::Duplicate(desc.name.clone())),
            None => {}
        }
        let family = AnyFamily::new(desc.clone());
        family.set_max_series(DEFAULT_MAX_SERIES);
        self.insert(family.clone())?;
        Ok(family)
    }

    /// Adds a family unless its labels clash with the constant ones or its names with a registered
    /// family's samples.
    fn insert(&self, family: AnyFamily) -> Result<()> {
        let desc = family.desc();
        // Locks in one order, families then constant labels, here and in `set_const_labels`: neither
        // can slip a clash in between the other's check and its write.
        let mut families = self.families.write();
        check_const_label_clash(&self.const_labels.read(), [desc])?;
        let names = desc.exposed_names();
        if let Some(clash) = names.iter().find(|n| families.taken.contains(*n)) {
            return Err(ExporterError::Duplicate(clash.clone()));
        }
        families.insert(family, names);
        Ok(())
    }

    /// Sets the labels added to every sample; they may not clash with any family's label names.
    pub fn set_const_labels(&self, labels: Vec<(String, String)>) -> Result<()> {
        let names: Vec<String> = labels.iter().map(|(n, _)| n.clone()).collect();
        check_label_names(&names, &["le", "worker"])?;
        let families = self.families.read();
        check_const_label_clash(&labels, families.by_name.values().map(AnyFamily::desc))?;
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

    /// The label cap, if the built-in families made one.
    pub fn current_label_cap(&self) -> Option<Arc<LabelCap>> {
        self.label_cap.read().clone()
    }

    /// The capacity to allocate for a text rendering, and the size of the one just made.
    pub fn render_size_hint(&self) -> usize {
        self.render_size.load(Ordering::Relaxed).max(4096)
    }

    pub fn note_render_size(&self, len: usize) {
        self.render_size.store(len + len / 8, Ordering::Relaxed);
    }

    pub fn families(&self) -> Vec<AnyFamily> {
        self.families.read().by_name.values().cloned().collect()
    }

    /// This process's own series of every family.
    #[cfg(test)]
    pub fn collect(&self) -> super::data::Collected {
        self.families().iter().map(|f| (f.desc().clone(), f.data())).collect()
    }

    /// In a forked child: start from zero, keeping families and the handles Python holds.
    pub fn reset_after_fork(&self) {
        self.families().iter().for_each(AnyFamily::reset);
        if let Some(cap) = self.label_cap.read().as_ref() {
            cap.reset();
        }
    }
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
    use super::super::desc::{GaugeMode, Kind};
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
    fn replace_swaps_the_definition() {
        let r = Registry::default();
        r.register::<Histogram>(Desc::new("h", "h", Kind::Histogram([1.0].into()), vec![]).unwrap())
            .unwrap();
        let new = Desc::new("h", "h", Kind::Histogram([1.0, 2.0].into()), vec![]).unwrap();
        assert_eq!(r.replace::<Histogram>(new.clone()).unwrap().desc, new);
        assert_eq!(r.families().len(), 1);
        assert!(
            r.register::<Counter>(counter("h_sum")).is_err(),
            "its names are still taken"
        );
        r.register::<Counter>(counter("g")).unwrap();
        assert!(r
            .register::<Gauge>(Desc::new("g_total", "h", Kind::Gauge(GaugeMode::Sum), vec![]).unwrap())
            .is_err());
    }
}
