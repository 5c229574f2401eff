//! OTLP/HTTP with protobuf: a scrape's families as an `ExportMetricsServiceRequest`, gzip-compressed,
//! `POST`ed to `{endpoint}/v1/metrics`, in cumulative temporality.
//!
//! Names and units are chosen so that Prometheus's default OTLP translation (`UnderscoreEscapingWithSuffixes`:
//! the unit's suffix, then `_total` for a monotonic sum) gives back the names `/metrics` serves; labels
//! (the constant ones first, as a scrape has them) become each point's attributes. A histogram with native
//! buckets goes as an `ExponentialHistogram` taken bucket for bucket from the same native data a scrape
//! serves, unless explicit bounds are asked for; one without them as a `Histogram` with explicit bounds.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;

use super::batch::Batch;
use super::otlp_proto::{
    AnyValue, Buckets, Data, ExponentialHistogram, ExponentialHistogramDataPoint, ExportMetricsServiceRequest,
    ExportMetricsServiceResponse, Gauge, Histogram, HistogramDataPoint, InstrumentationScope, KeyValue, Metric,
    NumberDataPoint, Resource, ResourceMetrics, ScopeMetrics, Sum, CUMULATIVE,
};
use crate::clock::unix_nanos;
use crate::distributed::Node;
use crate::exposition::{label_names, served};
use crate::metrics::{Desc, Kind, NativeSnapshot, SeriesData, ValueData};

/// The units whose Prometheus suffix a served name may end with: (suffix, UCUM unit).
const UNITS: [(&str, &str); 2] = [("_seconds", "s"), ("_bytes", "By")];

/// The name Prometheus's default OTLP translation gives a metric named `name` in `unit` (one of `UNITS`'
/// or none), a monotonic sum when `monotonic`: the name split into tokens at every character other than
/// `[a-zA-Z0-9:]`, the unit's word added unless a token already is it, every `total` token moved to the end
/// of a monotonic sum, joined by `_`, and `_` put before a leading digit (prometheus/otlptranslator).
pub fn prometheus_name(name: &str, unit: &str, monotonic: bool) -> String {
    let mut tokens: Vec<&str> = name
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|t| !t.is_empty())
        .collect();
    if let Some((suffix, _)) = UNITS.iter().find(|(_, u)| *u == unit) {
        let word = &suffix[1..];
        if !tokens.contains(&word) {
            tokens.push(word);
        }
    }
    if monotonic {
        tokens.retain(|t| *t != "total");
        tokens.push("total");
    }
    let joined = tokens.join("_");
    if joined.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{joined}")
    } else {
        joined
    }
}

/// The OTLP name and unit of a family: its base name less a unit suffix, given as the unit instead, when
/// the translation gives back the served name; else the base name without a unit.
pub fn name_and_unit(desc: &Desc) -> (String, &'static str) {
    let monotonic = desc.kind == Kind::Counter;
    let served = if monotonic {
        format!("{}_total", desc.name)
    } else {
        desc.name.clone()
    };
    UNITS
        .iter()
        .filter_map(|(suffix, unit)| Some((desc.name.strip_suffix(suffix)?, *unit)))
        .find(|(stem, unit)| prometheus_name(stem, unit, monotonic) == served)
        .map_or_else(|| (desc.name.clone(), ""), |(stem, unit)| (stem.to_string(), unit))
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            string_value: Some(value.to_string()),
        }),
    }
}

/// The buckets of the native keys in `keys` (a key `k` holds `(2^((k-1)·2^-s), 2^(k·2^-s)]`: OTLP's
/// index `k - 1`), with the empty ones between them counted as zero.
fn exponential_buckets(keys: &BTreeMap<i32, u64>) -> Option<Buckets> {
    let (first, last) = (*keys.first_key_value()?.0, *keys.last_key_value()?.0);
    let mut bucket_counts = vec![0; (last - first) as usize + 1];
    for (key, n) in keys {
        bucket_counts[(key - first) as usize] = *n;
    }
    Some(Buckets {
        offset: first - 1,
        bucket_counts,
    })
}

fn exponential_point(
    n: &NativeSnapshot,
    attributes: Vec<KeyValue>,
    times: (u64, u64),
) -> ExponentialHistogramDataPoint {
    ExponentialHistogramDataPoint {
        attributes,
        start_time_unix_nano: times.0,
        time_unix_nano: times.1,
        count: n.count,
        sum: Some(n.sum),
        scale: n.schema,
        zero_count: n.zero_count,
        positive: exponential_buckets(&n.positive),
        negative: exponential_buckets(&n.negative),
        zero_threshold: n.zero_threshold,
    }
}

/// Whether a series has native buckets. A merged family may have series without them (a worker that reported
/// classic buckets only): such a family goes with explicit bounds, so that no series is left out.
fn has_native(s: &SeriesData) -> bool {
    matches!(s.value, ValueData::Histogram { native: Some(_), .. })
}

/// One family as a metric; `native`: histograms with native buckets as exponential ones.
fn metric(
    desc: &Desc,
    series: &[SeriesData],
    constant: &[(String, String)],
    native: bool,
    times: (u64, u64),
) -> Metric {
    let label_names = label_names(desc, series);
    let attributes = |s: &SeriesData| -> Vec<KeyValue> {
        let own = label_names.iter().zip(&s.labels);
        constant
            .iter()
            .map(|(n, v)| (n, v))
            .chain(own)
            .map(|(n, v)| attribute(n, v))
            .collect()
    };
    let number = |s: &SeriesData| match s.value {
        ValueData::Scalar { value, .. } => Some(NumberDataPoint {
            attributes: attributes(s),
            start_time_unix_nano: times.0,
            time_unix_nano: times.1,
            as_double: Some(value),
        }),
        ValueData::Histogram { .. } => None,
    };
    let data = match &desc.kind {
        Kind::Counter => Data::Sum(Sum {
            data_points: series.iter().filter_map(number).collect(),
            aggregation_temporality: CUMULATIVE,
            is_monotonic: true,
        }),
        Kind::Gauge(_) => Data::Gauge(Gauge {
            data_points: series.iter().filter_map(number).collect(),
        }),
        Kind::Histogram(_) if native && series.iter().all(has_native) => {
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: series
                    .iter()
                    .filter_map(|s| match &s.value {
                        ValueData::Histogram { native: Some(n), .. } => {
                            Some(exponential_point(n, attributes(s), times))
                        }
                        _ => None,
                    })
                    .collect(),
                aggregation_temporality: CUMULATIVE,
            })
        }
        Kind::Histogram(bounds) => Data::Histogram(Histogram {
            data_points: series
                .iter()
                .filter_map(|s| match &s.value {
                    ValueData::Histogram { counts, sum, .. } if counts.len() == bounds.len() + 1 => {
                        Some(HistogramDataPoint {
                            attributes: attributes(s),
                            start_time_unix_nano: times.0,
                            time_unix_nano: times.1,
                            count: counts.iter().sum(),
                            sum: Some(*sum),
                            bucket_counts: counts.clone(),
                            explicit_bounds: bounds.to_vec(),
                        })
                    }
                    _ => None,
                })
                .collect(),
            aggregation_temporality: CUMULATIVE,
        }),
    };
    let (name, unit) = name_and_unit(desc);
    Metric {
        name,
        description: desc.help.clone(),
        unit: unit.to_string(),
        data: Some(data),
    }
}

fn points(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        None => 0,
    }
}

/// The request of one push: every served family under one resource (`resource`'s attributes) and scope.
/// `start`: when the cumulative values began (Unix ns); `native`: with exponential histograms.
pub fn request(node: &Node, resource: &[(String, String)], start: u64, native: bool) -> ExportMetricsServiceRequest {
    let collected = served(node);
    let constant = node.registry.const_labels();
    let times = (start, unix_nanos());
    let metrics = collected
        .iter()
        .filter(|(_, series)| !series.is_empty())
        .map(|(desc, series)| metric(desc, series, &constant, native, times))
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.iter().map(|(k, v)| attribute(k, v)).collect(),
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "locust_prometheus_exporter".to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                }),
                metrics,
            }],
        }],
    }
}

/// The request of one push, encoded and gzip-compressed.
pub fn batch(node: &Node, url: &str, resource: &[(String, String)], start: u64, native: bool) -> Batch {
    let request = request(node, resource, start, native);
    let samples = request.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(points)
        .sum::<usize>() as u64;
    let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = gzip.write_all(&request.encode_to_vec());
    Batch {
        url: url.to_string(),
        method: "POST",
        headers: vec![
            ("Content-Type", "application/x-protobuf".to_string()),
            ("Content-Encoding", "gzip".to_string()),
        ],
        body: gzip.finish().unwrap_or_default(),
        samples,
        native,
    }
}

/// The points a successful answer says were rejected, and why (`partial_success`), if any.
pub fn partial_success(body: &[u8]) -> Option<(u64, String)> {
    let partial = ExportMetricsServiceResponse::decode(body).ok()?.partial_success?;
    let rejected = u64::try_from(partial.rejected_data_points).unwrap_or(0);
    (rejected > 0 || !partial.error_message.is_empty()).then_some((rejected, partial.error_message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{GaugeMode, NativeConfig};

    fn desc(name: &str, kind: Kind) -> Desc {
        Desc::new(name, "help", kind, vec!["method".into()]).unwrap()
    }

    #[test]
    fn names_translate_back_to_the_served_ones() {
        let histogram = || Kind::Histogram([0.1, 1.0].into());
        for (name, kind, otlp, unit) in [
            ("locust_requests", Kind::Counter, "locust_requests", ""),
            (
                "locust_request_length_bytes",
                Kind::Counter,
                "locust_request_length",
                "By",
            ),
            ("process_cpu_seconds", Kind::Counter, "process_cpu", "s"),
            (
                "locust_request_duration_seconds",
                histogram(),
                "locust_request_duration",
                "s",
            ),
            (
                "locust_memory_usage_bytes",
                Kind::Gauge(GaugeMode::All),
                "locust_memory_usage",
                "By",
            ),
            (
                "locust_cpu_usage_percent",
                Kind::Gauge(GaugeMode::All),
                "locust_cpu_usage_percent",
                "",
            ),
            (
                "locust_users_running",
                Kind::Gauge(GaugeMode::Sum),
                "locust_users_running",
                "",
            ),
            ("busy_response_bytes", histogram(), "busy_response", "By"),
            // The translation cannot give these back with a unit: sent as they are.
            ("x_seconds_seconds", histogram(), "x_seconds_seconds", ""),
            ("a_bytes_total_bytes", Kind::Counter, "a_bytes_total_bytes", ""),
        ] {
            let d = desc(name, kind);
            assert_eq!(name_and_unit(&d), (otlp.to_string(), unit), "{name}");
        }
        assert_eq!(
            prometheus_name("http.server.duration", "s", false),
            "http_server_duration_seconds"
        );
        assert_eq!(prometheus_name("a__b_total_c", "", true), "a_b_c_total");
        assert_eq!(prometheus_name("9lives", "By", false), "_9lives_bytes");
        assert_eq!(prometheus_name("x_seconds", "s", false), "x_seconds");
    }

    #[test]
    fn native_keys_become_exponential_indexes() {
        let keys = [(-27, 1), (-26, 2), (0, 3)].into_iter().collect();
        let buckets = exponential_buckets(&keys).unwrap();
        assert_eq!(buckets.offset, -28);
        assert_eq!(buckets.bucket_counts.len(), 28);
        assert_eq!(&buckets.bucket_counts[..2], &[1, 2]);
        assert_eq!(buckets.bucket_counts[27], 3);
        assert_eq!(buckets.bucket_counts.iter().sum::<u64>(), 6);
        assert_eq!(exponential_buckets(&BTreeMap::new()), None);
    }

    fn node() -> Node {
        let node = Node::default();
        let registry = &node.registry;
        let native = Desc::new(
            "h_seconds",
            "x",
            Kind::Histogram([0.1, 1.0].into()),
            vec!["name".into()],
        )
        .unwrap()
        .with_native(NativeConfig::default());
        let h = registry.register::<crate::metrics::Histogram>(native).unwrap();
        let child = h.child(&["/a"]).unwrap();
        for v in [0.05, 0.5, 0.5, 3.0] {
            child.observe(v);
        }
        registry.set_const_labels(vec![("env".into(), "ci".into())]).unwrap();
        node
    }

    #[test]
    fn exponential_or_explicit_with_constant_labels_first() {
        let node = node();
        let resource = [("service.name".to_string(), "locust".to_string())];
        let find = |request: &ExportMetricsServiceRequest| {
            let rm = &request.resource_metrics[0];
            assert_eq!(
                rm.resource.as_ref().unwrap().attributes,
                vec![attribute("service.name", "locust")]
            );
            let metrics = &rm.scope_metrics[0].metrics;
            metrics.iter().find(|m| m.name == "h").cloned().unwrap()
        };
        let m = find(&request(&node, &resource, 7, true));
        assert_eq!(m.unit, "s");
        let Some(Data::ExponentialHistogram(h)) = m.data else {
            panic!("{m:?}")
        };
        assert_eq!(h.aggregation_temporality, CUMULATIVE);
        let p = &h.data_points[0];
        assert_eq!(p.attributes, vec![attribute("env", "ci"), attribute("name", "/a")]);
        assert_eq!(
            (p.count, p.sum, p.scale, p.zero_count, p.start_time_unix_nano),
            (4, Some(4.05), 3, 0, 7)
        );
        assert!(p.time_unix_nano > 7);
        let positive = p.positive.as_ref().unwrap();
        assert_eq!(positive.bucket_counts.iter().sum::<u64>(), 4);
        // OTLP's index i holds (2^(i/8), 2^((i+1)/8)] at scale 3: the smallest value, 0.05, is in the first.
        let bound = |i: i32| 2f64.powf(f64::from(i) / 8.0);
        assert!(bound(positive.offset) < 0.05 && 0.05 <= bound(positive.offset + 1));
        assert_eq!(positive.bucket_counts[0], 1);
        assert!(bound(positive.offset + positive.bucket_counts.len() as i32 - 1) < 3.0);
        let m = find(&request(&node, &resource, 7, false));
        let Some(Data::Histogram(h)) = m.data else {
            panic!("{m:?}")
        };
        let p = &h.data_points[0];
        assert_eq!(
            (p.count, p.bucket_counts.clone(), p.explicit_bounds.clone()),
            (4, vec![1, 2, 1], vec![0.1, 1.0])
        );
    }

    #[test]
    fn a_family_with_a_series_without_native_buckets_goes_with_explicit_bounds() {
        let config = NativeConfig::default();
        let d = Desc::new("h", "x", Kind::Histogram([1.0].into()), vec!["w".into()])
            .unwrap()
            .with_native(config);
        let mut n = NativeSnapshot::empty(&config);
        n.positive = [(1, 2)].into_iter().collect();
        (n.count, n.sum) = (2, 3.0);
        let series = |label: &str, native| SeriesData {
            labels: vec![label.into()],
            value: ValueData::Histogram {
                counts: vec![0, 2],
                sum: 3.0,
                native,
            },
        };
        let both = [series("a", Some(Box::new(n))), series("b", None)];
        let m = metric(&d, &both, &[], true, (1, 2));
        assert!(
            matches!(m.data, Some(Data::Histogram(ref h)) if h.data_points.len() == 2),
            "{m:?}"
        );
        let m = metric(&d, &both[..1], &[], true, (1, 2));
        assert!(
            matches!(m.data, Some(Data::ExponentialHistogram(ref h)) if h.data_points.len() == 1),
            "{m:?}"
        );
    }

    #[test]
    fn the_body_is_gzipped_protobuf_and_partial_successes_are_read() {
        let b = batch(&node(), "http://127.0.0.1:1/v1/metrics", &[], 1, true);
        assert!(b.native);
        let mut proto = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&b.body[..]), &mut proto).unwrap();
        let request = ExportMetricsServiceRequest::decode(&proto[..]).unwrap();
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(b.samples, metrics.iter().map(points).sum::<usize>() as u64);
        assert!(b.samples >= 1);

        let answer = |rejected, message: &str| {
            ExportMetricsServiceResponse {
                partial_success: Some(super::super::otlp_proto::ExportMetricsPartialSuccess {
                    rejected_data_points: rejected,
                    error_message: message.into(),
                }),
            }
            .encode_to_vec()
        };
        assert_eq!(partial_success(&answer(2, "no")), Some((2, "no".into())));
        assert_eq!(partial_success(&answer(0, "")), None);
        assert_eq!(partial_success(b""), None);
        assert_eq!(partial_success(b"\xff\xff"), None);
    }
}
