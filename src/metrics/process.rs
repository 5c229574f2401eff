//! The standard process metrics of the process that serves (`process_cpu_seconds_total`, resident and
//! virtual memory, open and maximum file descriptors, threads, start time), named as client_python and
//! every Go exporter name them, read at each scrape by the prometheus crate's Linux process collector.

use super::data::Collected;

/// The process metrics now; none where the collector does not exist (systems other than Linux).
#[cfg(target_os = "linux")]
pub fn collect() -> Collected {
    use prometheus::core::Collector;
    use prometheus::process_collector::ProcessCollector;
    use prometheus::proto::MetricType;

    use super::data::{SeriesData, ValueData};
    use super::desc::{Desc, GaugeMode, Kind};

    // Made per scrape: it reads the pid when made, and a forked child that serves has another one.
    ProcessCollector::for_self()
        .collect()
        .iter()
        .filter_map(|family| {
            let metric = family.get_metric().first()?;
            let (name, kind, value) = match family.get_field_type() {
                MetricType::COUNTER => (
                    family.name().strip_suffix("_total")?,
                    Kind::Counter,
                    metric.get_counter().get_value(),
                ),
                MetricType::GAUGE => (
                    family.name(),
                    Kind::Gauge(GaugeMode::LiveSum),
                    metric.get_gauge().get_value(),
                ),
                _ => return None,
            };
            let desc = Desc::new(name, family.help(), kind, vec![]).ok()?;
            let value = ValueData::Scalar { value, updated: 0.0 };
            Some((desc, vec![SeriesData { labels: vec![], value }]))
        })
        .collect()
}

#[cfg(not(target_os = "linux"))]
pub fn collect() -> Collected {
    Vec::new()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::super::data::ValueData;
    use super::*;

    #[test]
    fn the_seven_standard_metrics_with_plausible_values() {
        let got = collect();
        let value = |name: &str| match got.iter().find(|(d, _)| d.name == name).map(|(_, s)| &s[0].value) {
            Some(ValueData::Scalar { value, .. }) => *value,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(got.len(), 7);
        assert!(value("process_resident_memory_bytes") > 0.0);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_threads") >= 1.0);
        assert!(value("process_start_time_seconds") > 1.5e9);
        assert!(value("process_cpu_seconds") >= 0.0);
    }
}
