//! Plain copies of collected values: what a scrape renders, a push sends and a worker reports.

use super::desc::Desc;
use super::native_histogram::NativeSnapshot;

/// A plain copy of a series' value: what a scrape renders and what a worker reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueData {
    /// Counter or gauge; `updated` is the wall-clock time of the last write (for `mostrecent`).
    Scalar { value: f64, updated: f64 },
    /// Histogram: per-bucket (not cumulative) counts, the last one being `+Inf`, and the sum;
    /// with the native buckets too when the family has them.
    Histogram {
        counts: Vec<u64>,
        sum: f64,
        native: Option<Box<NativeSnapshot>>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub labels: Vec<String>,
    pub value: ValueData,
}

/// Families with their series, in name order: what a scrape renders.
pub type Collected = Vec<(Desc, Vec<SeriesData>)>;
