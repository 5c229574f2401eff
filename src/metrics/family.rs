//! A metric family: its descriptor and its series of one value type, found by the exact label values;
//! and `AnyFamily`, a family of any type, as the registry holds it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::data::SeriesData;
use super::desc::{Desc, Kind};
use super::key::series_key;
use super::series::{Counter, Gauge, Grow, Histogram, Series, ValueType};
use crate::errors::{ExporterError, Result};
use crate::log_once::LogOnce;

pub struct Family<M> {
    pub desc: Desc,
    series: RwLock<HashMap<String, Arc<Series<M>>>>,
    /// Most series `child` makes (0: no limit).
    max_series: AtomicUsize,
    /// The refusal of a series past the limit, logged once per family.
    pub logged: LogOnce,
}

impl<M: ValueType> Family<M> {
    /// A family of `desc`, whose kind is `M`'s (the registry's callers make sure of it).
    pub fn new(desc: Desc) -> Self {
        let family = Family {
            desc,
            series: RwLock::new(HashMap::new()),
            max_series: AtomicUsize::new(0),
            logged: LogOnce::default(),
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

    /// Most series `child` makes (0: no limit).
    pub fn max_series(&self) -> usize {
        self.max_series.load(Ordering::Relaxed)
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

    pub fn max_series(&self) -> usize {
        each_kind!(self, f => f.max_series())
    }

    pub fn set_max_series(&self, max: usize) {
        each_kind!(self, f => f.set_max_series(max))
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

/// A value type whose families the registry holds type-erased, and finds again as their own type.
pub trait Typed: ValueType {
    fn erase(family: Arc<Family<Self>>) -> AnyFamily;
    /// The family as a family of this type, if it is one.
    fn typed(family: &AnyFamily) -> Option<&Arc<Family<Self>>>;
}

/// `Typed` for a value type and its variant of `AnyFamily`.
macro_rules! typed {
    ($type:ident) => {
        impl Typed for $type {
            fn erase(family: Arc<Family<Self>>) -> AnyFamily {
                AnyFamily::$type(family)
            }
            fn typed(family: &AnyFamily) -> Option<&Arc<Family<Self>>> {
                match family {
                    AnyFamily::$type(f) => Some(f),
                    _ => None,
                }
            }
        }
    };
}

typed!(Counter);
typed!(Gauge);
typed!(Histogram);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_found_by_exact_labels() {
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
}
