//! Metric storage: descriptors, typed families of series updated with atomics, the registry that holds
//! them, and the plain copies of their values that everything downstream reads.

mod atomic_f64;
mod cap;
mod data;
mod desc;
mod family;
mod key;
mod names;
mod native_histogram;
mod process;
mod registry;
mod series;

pub use cap::{LabelCap, OVERFLOW};
pub use data::{Collected, SeriesData, ValueData};
#[cfg(test)]
pub use desc::DEFAULT_BUCKETS;
pub use desc::{parse_buckets, Desc, GaugeMode, Kind};
pub use family::{AnyFamily, Family, Typed};
pub use key::{push_series_key, series_key, write_uint};
pub use native_histogram::{NativeConfig, NativeSnapshot, DEFAULT_ZERO_THRESHOLD, MAX_SCHEMA, MIN_SCHEMA};
pub use process::{collect as collect_process, hold as hold_process_files};
pub use registry::{Registry, DEFAULT_MAX_SERIES};
pub use series::{Counter, Gauge, Grow, Histogram, Series};
