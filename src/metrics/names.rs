//! Metric and label name rules of the Prometheus data model.

use std::collections::HashSet;

use crate::errors::{ExporterError, Result};

fn valid(name: &str, allow_colon: bool) -> bool {
    let mut chars = name.chars();
    let first_ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || (allow_colon && c == ':'));
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':'))
        && !name.starts_with("__")
}

pub fn check_metric_name(name: &str) -> Result<()> {
    if valid(name, true) {
        Ok(())
    } else {
        Err(ExporterError::InvalidMetricName(name.to_string()))
    }
}

/// Checks label names; `reserved` are names this family may not use (`le` on histograms).
/// Duplicates are found through a set: a worker's report may carry many names.
pub fn check_label_names(names: &[String], reserved: &[&str]) -> Result<()> {
    let mut seen = HashSet::with_capacity(names.len());
    for name in names {
        if !valid(name, false) {
            return Err(ExporterError::InvalidLabelName(name.clone()));
        }
        if reserved.contains(&name.as_str()) {
            return Err(ExporterError::ReservedLabelName(name.clone()));
        }
        if !seen.insert(name.as_str()) {
            return Err(ExporterError::DuplicateLabelName(name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names() {
        for ok in ["a", "_a", "a:b", "locust_users_total", "A9"] {
            assert!(check_metric_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1abc", "a-b", "a b", "é", "__x"] {
            assert!(check_metric_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_names() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(check_label_names(&s(&["a", "b_1"]), &[]).is_ok());
        for bad in [&["1a"][..], &["a:b"], &["a-b"], &["__r"], &["a", "a"]] {
            assert!(check_label_names(&s(bad), &[]).is_err(), "{bad:?}");
        }
        assert!(check_label_names(&s(&["le"]), &["le"]).is_err());
    }
}
