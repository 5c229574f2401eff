//! Metric storage: typed families of series updated with atomics, the registry, and the master's merge.

mod cap;
mod family;
mod names;
mod native_histogram;
mod registry;
mod series;
mod workers;

pub use cap::{LabelCap, OVERFLOW};
#[cfg(test)]
pub use family::DEFAULT_BUCKETS;
pub use family::{parse_buckets, push_series_key, series_key, write_uint, Desc, Family, GaugeMode, Kind};
pub use native_histogram::{NativeConfig, NativeSnapshot};
#[cfg(test)]
pub use registry::as_report;
pub use registry::{Collected, Registry, Report};
pub use series::{now, Counter, Gauge, Histogram, MetricType, ReportedSeries, Series, SeriesData, ValueData};
