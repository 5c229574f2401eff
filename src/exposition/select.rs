//! Which families a scrape renders, and the label names their series carry.

use crate::metrics::{Desc, SeriesData};

/// Whether `only` (empty: everything) names any of the family's sample names.
pub fn selected(desc: &Desc, only: &[String]) -> bool {
    only.is_empty() || desc.exposed_names().iter().any(|n| only.contains(n))
}

/// The family's label names, and `worker` when its series carry one more value (per-worker gauges).
pub fn label_names(desc: &Desc, series: &[SeriesData]) -> Vec<String> {
    let mut label_names = desc.label_names.clone();
    if series.first().is_some_and(|s| s.labels.len() > label_names.len()) {
        label_names.push("worker".to_string());
    }
    label_names
}
