//! What a metric family is: its name, help, kind (with a gauge's multiprocess mode and a histogram's
//! buckets) and label names, each checked when the descriptor is made.

use std::sync::Arc;

use super::names::{check_label_names, check_metric_name};
use super::native_histogram::NativeConfig;
use crate::errors::{ExporterError, Result};

/// How a gauge's values from several processes (Locust workers) combine on the master.
/// Named as prometheus_client's `multiprocess_mode`; the `live` variants drop missing workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaugeMode {
    All,
    LiveAll,
    Min,
    LiveMin,
    Max,
    LiveMax,
    Sum,
    LiveSum,
    MostRecent,
    LiveMostRecent,
}

/// Each mode's name and its code in worker reports. The codes are part of the wire format: a master and
/// workers of different versions must agree on them, so they are written out, never derived from order.
const GAUGE_MODES: [(GaugeMode, &str, u8); 10] = [
    (GaugeMode::All, "all", 0),
    (GaugeMode::LiveAll, "liveall", 1),
    (GaugeMode::Min, "min", 2),
    (GaugeMode::LiveMin, "livemin", 3),
    (GaugeMode::Max, "max", 4),
    (GaugeMode::LiveMax, "livemax", 5),
    (GaugeMode::Sum, "sum", 6),
    (GaugeMode::LiveSum, "livesum", 7),
    (GaugeMode::MostRecent, "mostrecent", 8),
    (GaugeMode::LiveMostRecent, "livemostrecent", 9),
];

impl GaugeMode {
    pub fn parse(s: &str) -> Result<Self> {
        GAUGE_MODES
            .iter()
            .find(|(_, n, _)| *n == s)
            .map(|(m, _, _)| *m)
            .ok_or_else(|| {
                let names: Vec<_> = GAUGE_MODES.iter().map(|(_, n, _)| *n).collect();
                ExporterError::InvalidValue(format!("invalid multiprocess_mode {s:?}: expected one of {names:?}"))
            })
    }
    /// The mode's code in worker reports.
    pub fn code(self) -> u8 {
        GAUGE_MODES
            .iter()
            .find(|(m, _, _)| *m == self)
            .map_or(0, |(_, _, c)| *c)
    }
    pub fn from_code(code: u8) -> Option<Self> {
        GAUGE_MODES.iter().find(|(_, _, c)| *c == code).map(|(m, _, _)| *m)
    }
    /// Whether values of workers that Locust marked missing are left out.
    pub fn live_only(self) -> bool {
        matches!(
            self,
            Self::LiveAll | Self::LiveMin | Self::LiveMax | Self::LiveSum | Self::LiveMostRecent
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Counter,
    Gauge(GaugeMode),
    /// Upper bounds, increasing, without the implicit `+Inf`.
    Histogram(Arc<[f64]>),
}

#[derive(Clone, Debug)]
pub struct Desc {
    /// Base name: a counter's samples add `_total`, a histogram's `_bucket`, `_sum`, `_count`.
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub label_names: Vec<String>,
    /// A histogram's native buckets, kept beside the classic ones.
    pub native: Option<NativeConfig>,
}

/// A family's identity. The native layout is left out: it is this process's own resolution, and a family
/// reported by a worker with another one (or none) still merges by its classic buckets. So is the help
/// text: a release that rewords one still merges with workers of the release before.
impl PartialEq for Desc {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, &self.kind, &self.label_names) == (&other.name, &other.kind, &other.label_names)
    }
}

impl Desc {
    /// Validates a descriptor; `name` is the base name (a counter's without `_total`).
    pub fn new(name: &str, help: &str, kind: Kind, label_names: Vec<String>) -> Result<Self> {
        check_metric_name(name)?;
        // `le` is the histogram's own label; `worker` is added by the gauge modes with one series per process.
        let reserved: &[&str] = match kind {
            Kind::Histogram(_) => &["le"],
            Kind::Gauge(GaugeMode::All | GaugeMode::LiveAll) => &["worker"],
            _ => &[],
        };
        check_label_names(&label_names, reserved)?;
        if let Kind::Histogram(bounds) = &kind {
            check_buckets(bounds)?;
        }
        Ok(Desc {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            label_names,
            native: None,
        })
    }

    /// The same histogram with native buckets too.
    pub fn with_native(self, config: NativeConfig) -> Self {
        Desc {
            native: Some(config),
            ..self
        }
    }

    /// Every sample name the family may expose; two families clash when these meet.
    pub fn exposed_names(&self) -> Vec<String> {
        let suffixes: &[&str] = match self.kind {
            Kind::Counter => &["", "_total", "_created"],
            Kind::Gauge(_) => &[""],
            Kind::Histogram(_) => &["", "_bucket", "_sum", "_count", "_created"],
        };
        suffixes.iter().map(|s| format!("{}{s}", self.name)).collect()
    }
}

/// Histogram buckets in seconds, from 1 ms to 60 s: load-test latencies, not RPC ones. The default of
/// every histogram, Locust's request durations and custom ones alike.
pub const DEFAULT_BUCKETS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
];

/// Bucket bounds as given (`DEFAULT_BUCKETS` if none): a trailing `+Inf` is accepted and dropped,
/// since it is always there, and the rest checked.
pub fn parse_buckets(buckets: Option<Vec<f64>>) -> Result<Vec<f64>> {
    let mut bounds = buckets.unwrap_or_else(|| DEFAULT_BUCKETS.to_vec());
    if bounds.last() == Some(&f64::INFINITY) {
        bounds.pop();
    }
    check_buckets(&bounds)?;
    Ok(bounds)
}

/// Finite, strictly increasing bounds; `+Inf` is implied.
pub fn check_buckets(bounds: &[f64]) -> Result<()> {
    if bounds.is_empty() {
        return Err(ExporterError::InvalidBuckets(
            "at least one finite bucket is needed besides +Inf".into(),
        ));
    }
    if bounds.iter().any(|b| !b.is_finite()) {
        return Err(ExporterError::InvalidBuckets(format!(
            "bounds must be finite numbers, got {bounds:?}"
        )));
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ExporterError::InvalidBuckets(format!(
            "buckets not in strictly increasing order: {bounds:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names_and_buckets() {
        let d = Desc::new("x", "h", Kind::Counter, vec![]).unwrap();
        assert!(d.exposed_names().contains(&"x_total".to_string()));
        assert!(Desc::new("g", "h", Kind::Gauge(GaugeMode::All), vec!["worker".into()]).is_err());
        assert!(Desc::new("g", "h", Kind::Gauge(GaugeMode::Sum), vec!["worker".into()]).is_ok());
        for bad in [&[][..], &[1.0, 0.5], &[1.0, 1.0], &[f64::NAN]] {
            assert!(Desc::new("h", "h", Kind::Histogram(bad.into()), vec![]).is_err());
        }
        assert!(Desc::new("h", "h", Kind::Histogram([1.0].into()), vec!["le".into()]).is_err());
    }

    #[test]
    fn gauge_mode_codes_are_fixed() {
        // The wire codes of worker reports: changing one breaks reports between versions.
        let expected = [
            (GaugeMode::All, 0),
            (GaugeMode::LiveSum, 7),
            (GaugeMode::LiveMostRecent, 9),
        ];
        for (mode, code) in expected {
            assert_eq!(mode.code(), code);
            assert_eq!(GaugeMode::from_code(code), Some(mode));
        }
        for (mode, name, _) in GAUGE_MODES {
            assert_eq!(GaugeMode::parse(name).unwrap(), mode);
            assert_eq!(GaugeMode::from_code(mode.code()), Some(mode));
        }
        assert_eq!(GaugeMode::from_code(10), None);
    }
}
