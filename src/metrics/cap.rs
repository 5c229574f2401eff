//! A cap on the distinct values of one label across families: Locust's request `name`, which a URL
//! with an id in it (and no `name=`) makes unbounded.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::series::{Counter, Series};

/// The label value that names past the cap are recorded under. `<` and `>` cannot appear in a URL's
/// path unencoded, so no real path collides with it.
pub const OVERFLOW: &str = "<other>";

pub struct LabelCap {
    /// The capped label.
    pub label: String,
    /// The families where it is capped, sharing one set of admitted values.
    pub families: Vec<String>,
    /// The family whose growth under the overflow value is counted in `overflowed` (the requests).
    pub counted: String,
    /// Requests recorded under the overflow value.
    pub overflowed: Arc<Series<Counter>>,
    /// 0: no cap.
    max: AtomicUsize,
    values: RwLock<HashSet<String>>,
    /// Whether a value was ever refused (for the warning, logged once).
    reached: AtomicBool,
}

impl LabelCap {
    pub fn new(
        label: &str,
        families: Vec<String>,
        counted: &str,
        overflowed: Arc<Series<Counter>>,
        max: usize,
    ) -> Self {
        LabelCap {
            label: label.to_string(),
            families,
            counted: counted.to_string(),
            overflowed,
            max: AtomicUsize::new(max),
            values: RwLock::new(HashSet::new()),
            reached: AtomicBool::new(false),
        }
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Values admitted at most (0: no cap).
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// The value to record under: `value` itself while it is admitted already or there is room, else
    /// the overflow value. A value once admitted stays so: its series never move.
    pub fn admit<'a>(&self, value: &'a str) -> &'a str {
        let max = self.max.load(Ordering::Relaxed);
        if max == 0 || value == OVERFLOW || self.values.read().contains(value) {
            return value;
        }
        let mut values = self.values.write();
        if values.len() < max {
            values.insert(value.to_string());
            value
        } else if values.contains(value) {
            value
        } else {
            self.reached.store(true, Ordering::Relaxed);
            OVERFLOW
        }
    }

    /// Whether some value was recorded under the overflow value in this process.
    pub fn reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }

    /// Where the capped label sits in a family's labels, if the family is capped.
    pub fn position(&self, family: &str, label_names: &[String]) -> Option<usize> {
        if self.families.iter().any(|f| f == family) {
            label_names.iter().position(|n| *n == self.label)
        } else {
            None
        }
    }

    /// In a forked child: its own names are counted from none.
    pub fn reset(&self) {
        self.values.write().clear();
        self.reached.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::super::desc::{Desc, Kind};
    use super::super::family::Family;
    use super::*;

    #[test]
    fn past_the_cap_new_values_overflow_and_admitted_ones_stay() {
        let overflowed = Family::<Counter>::new(Desc::new("o", "h", Kind::Counter, vec![]).unwrap()).detached();
        let cap = LabelCap::new("name", vec!["f".into()], "f", overflowed, 2);
        assert_eq!(cap.admit("/a"), "/a");
        assert_eq!(cap.admit("/b"), "/b");
        assert!(!cap.reached());
        assert_eq!(cap.admit("/c"), OVERFLOW);
        assert!(cap.reached());
        assert_eq!(cap.admit("/a"), "/a");
        assert_eq!(cap.admit(OVERFLOW), OVERFLOW);
        cap.set_max(0);
        assert_eq!(cap.admit("/c"), "/c", "0: no cap");
        assert_eq!(cap.position("f", &["method".into(), "name".into()]), Some(1));
        assert_eq!(cap.position("g", &["name".into()]), None);
    }
}
