//! Metric storage: families of series with atomic cells, the registry, and the master's merge.

mod cap;
mod family;
mod names;
mod native_histogram;
mod registry;
mod series;
mod workers;

pub use cap::{LabelCap, OVERFLOW};
pub use family::{check_buckets, push_series_key, series_key, Desc, Family, GaugeMode, Kind};
pub use native_histogram::{NativeConfig, NativeSnapshot};
#[cfg(test)]
pub use registry::as_report;
pub use registry::{Collected, Registry, Report};
pub use series::{now, Cell, ReportedSeries, Scalar, Series, SeriesData, ValueData};
