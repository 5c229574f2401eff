//! Prometheus remote write 1.0: a protobuf `WriteRequest` (messages written out by hand, for `prost`
//! derive: no protoc at build time), snappy-compressed, `POST`ed.
//!
//! The series are those of a scrape, read back from the text exposition, so that names, `le` values,
//! the master's merge and the constant labels are exactly a scrape's; `job` and `instance` are added
//! as Prometheus adds them to a scraped target (a clashing exposed label becomes `exported_<name>`).
//!
//! A histogram with native buckets is also sent as a native histogram sample (`TimeSeries.histograms`),
//! under the family's base name as Prometheus stores it, read back from the protobuf exposition of the
//! same collection (so its spans and deltas are the scrape's).

use prost::Message;

use super::batch::{Batch, JOB};
use crate::clock::unix_millis;
use crate::distributed::Node;
use crate::exposition::protobuf::{self as exposition_pb, MetricFamily, MetricType};
use crate::exposition::{served, text, Format};

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// prompb `BucketSpan`.
#[derive(Clone, PartialEq, Message)]
pub struct BucketSpan {
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// prompb `Histogram`, integer counts only (`count_int`, `zero_count_int` and deltas: the members of its
/// `oneof`s that are used, optional so that a zero is still sent).
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    #[prost(uint64, optional, tag = "1")]
    pub count_int: Option<u64>,
    #[prost(double, tag = "3")]
    pub sum: f64,
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    #[prost(uint64, optional, tag = "6")]
    pub zero_count_int: Option<u64>,
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// `ResetHint`: 0, unknown (Prometheus looks for a reset itself).
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

type Parsed = (String, Vec<(String, String)>, f64);

/// One sample line of the text format 0.0.4 as `exposition` writes it: `name{a="x",b="y"} value`.
fn parse_line(line: &str) -> Option<Parsed> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        while let Some(after) = rest.strip_prefix(',').or(Some(rest)).filter(|r| !r.starts_with('}')) {
            let (label, tail) = after.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = tail.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((label.to_string(), value));
            rest = &tail[end + 1..];
        }
        rest = rest.strip_prefix('}')?;
    }
    let value = match rest.trim() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// The labels of a series named `name` with the `exposed` labels, with `job` and `instance` as a
/// scrape of `instance` gives them, sorted.
fn scraped_labels(name: &str, exposed: Vec<(String, String)>, instance: &str) -> Vec<Label> {
    let mut labels: Vec<Label> = exposed
        .into_iter()
        .map(|(name, value)| {
            let name = match name.as_str() {
                "job" | "instance" => format!("exported_{name}"),
                _ => name,
            };
            Label { name, value }
        })
        .collect();
    for (name, value) in [("__name__", name), ("job", JOB), ("instance", instance)] {
        labels.push(Label {
            name: name.to_string(),
            value: value.to_string(),
        });
    }
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    labels
}

/// The time series of a text exposition, with `job` and `instance` as a scrape of `instance` gives them.
pub fn series(text: &str, instance: &str, timestamp: i64) -> Vec<TimeSeries> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .map(|(name, exposed, value)| TimeSeries {
            labels: scraped_labels(&name, exposed, instance),
            samples: vec![Sample { value, timestamp }],
            histograms: Vec::new(),
        })
        .collect()
}

fn span(s: &exposition_pb::BucketSpan) -> BucketSpan {
    BucketSpan {
        offset: s.offset.unwrap_or_default(),
        length: s.length.unwrap_or_default(),
    }
}

/// One native histogram series (named after the family) for each histogram of a protobuf exposition
/// that has native buckets (a schema); the others have only their classic series.
pub fn native_series(mut protobuf: &[u8], instance: &str, timestamp: i64) -> Vec<TimeSeries> {
    let mut out = Vec::new();
    while let Ok(family) = MetricFamily::decode_length_delimited(&mut protobuf) {
        if family.r#type != Some(MetricType::Histogram as i32) {
            continue;
        }
        let name = family.name.unwrap_or_default();
        for metric in family.metric {
            let Some(h) = metric.histogram.filter(|h| h.schema.is_some()) else {
                continue;
            };
            let exposed = metric
                .label
                .into_iter()
                .map(|l| (l.name.unwrap_or_default(), l.value.unwrap_or_default()))
                .collect();
            out.push(TimeSeries {
                labels: scraped_labels(&name, exposed, instance),
                samples: Vec::new(),
                histograms: vec![Histogram {
                    count_int: h.sample_count,
                    sum: h.sample_sum.unwrap_or_default(),
                    schema: h.schema.unwrap_or_default(),
                    zero_threshold: h.zero_threshold.unwrap_or_default(),
                    zero_count_int: Some(h.zero_count.unwrap_or_default()),
                    negative_spans: h.negative_span.iter().map(span).collect(),
                    negative_deltas: h.negative_delta,
                    positive_spans: h.positive_span.iter().map(span).collect(),
                    positive_deltas: h.positive_delta,
                    reset_hint: 0,
                    timestamp,
                }],
            });
        }
    }
    out
}

/// The request of one push; `native`: with the native histograms too.
pub fn batch(node: &Node, url: &str, instance: &str, native: bool) -> Batch {
    // One collection for both expositions, so that the classic and native series agree.
    let collected = served(node);
    let constant = node.registry.const_labels();
    let timestamp = unix_millis();
    let text = text::render(&collected, Format::Text, &[], &constant, 0);
    let mut timeseries = series(&text, instance, timestamp);
    if native {
        let protobuf = exposition_pb::render(&collected, &[], &constant);
        timeseries.extend(native_series(&protobuf, instance, timestamp));
    }
    let samples = timeseries.len() as u64;
    let proto = WriteRequest { timeseries }.encode_to_vec();
    // Compressing a Vec in memory cannot fail but for sizes over 4 GiB, which a scrape never reaches.
    let body = snap::raw::Encoder::new().compress_vec(&proto).unwrap_or_default();
    Batch {
        url: url.to_string(),
        method: "POST",
        headers: vec![
            ("Content-Type", "application/x-protobuf".to_string()),
            ("Content-Encoding", "snappy".to_string()),
            ("X-Prometheus-Remote-Write-Version", "0.1.0".to_string()),
        ],
        body,
        samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(ts: &TimeSeries) -> Vec<(&str, &str)> {
        ts.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect()
    }

    #[test]
    fn lines() {
        assert_eq!(parse_line("up 1.0"), Some(("up".into(), vec![], 1.0)));
        let (name, labels, value) = parse_line(r#"x_bucket{a="q\"u\\o\nte",le="+Inf"} 3"#).unwrap();
        assert_eq!((name.as_str(), value), ("x_bucket", 3.0));
        assert_eq!(
            labels,
            vec![("a".into(), "q\"u\\o\nte".into()), ("le".into(), "+Inf".into())]
        );
        assert_eq!(
            parse_line(r#"g{a="},{"} -Inf"#).unwrap().1,
            vec![("a".into(), "},{".into())]
        );
        assert!(parse_line("g NaN").unwrap().2.is_nan());
        assert_eq!(parse_line(r#"g{} 2.5e-7"#).unwrap().2, 2.5e-7);
        assert_eq!(parse_line(r#"g{a="unterminated} 1"#), None);
    }

    #[test]
    fn series_carry_job_instance_and_sorted_labels() {
        let text = "# HELP c_total help\n# TYPE c_total counter\nc_total{method=\"GET\",job=\"mine\"} 5.0\n";
        let ts = series(text, "host:9646", 1234);
        assert_eq!(ts.len(), 1);
        assert_eq!(
            labels(&ts[0]),
            vec![
                ("__name__", "c_total"),
                ("exported_job", "mine"),
                ("instance", "host:9646"),
                ("job", "locust"),
                ("method", "GET")
            ]
        );
        assert_eq!(
            ts[0].samples,
            vec![Sample {
                value: 5.0,
                timestamp: 1234
            }]
        );
    }

    #[test]
    fn native_buckets_become_a_histogram_sample_under_the_base_name() {
        use crate::metrics::{Desc, Kind, NativeConfig, NativeSnapshot, SeriesData, ValueData};
        let native_desc = |name: &str| {
            Desc::new(name, "x", Kind::Histogram([0.1, 1.0].into()), vec!["job".into()])
                .unwrap()
                .with_native(NativeConfig::default())
        };
        let mut native = NativeSnapshot::empty(&NativeConfig::default());
        native.positive = [(-27, 1), (-26, 2), (0, 3)].into_iter().collect();
        native.zero_count = 1;
        (native.count, native.sum) = (7, 1.5);
        let value = |native: Option<Box<NativeSnapshot>>| ValueData::Histogram {
            counts: vec![3, 3, 1],
            sum: 1.5,
            native,
        };
        let classic = Desc::new("c", "x", Kind::Histogram([0.1, 1.0].into()), vec![]).unwrap();
        let collected = vec![
            (
                native_desc("h"),
                vec![SeriesData {
                    labels: vec!["mine".into()],
                    value: value(Some(Box::new(native))),
                }],
            ),
            (
                classic,
                vec![SeriesData {
                    labels: vec![],
                    value: value(None),
                }],
            ),
        ];
        let run = [("run".to_string(), "r1".to_string())];
        let ts = native_series(&exposition_pb::render(&collected, &[], &run), "host:1", 99);
        assert_eq!(ts.len(), 1, "only the histogram with native buckets");
        assert_eq!(
            labels(&ts[0]),
            vec![
                ("__name__", "h"),
                ("exported_job", "mine"),
                ("instance", "host:1"),
                ("job", "locust"),
                ("run", "r1")
            ]
        );
        assert!(ts[0].samples.is_empty());
        let h = &ts[0].histograms[0];
        assert_eq!((h.count_int, h.sum, h.zero_count_int), (Some(7), 1.5, Some(1)));
        assert_eq!((h.schema, h.timestamp), (3, 99));
        assert!(h.zero_threshold > 0.0);
        let spans: Vec<_> = h.positive_spans.iter().map(|s| (s.offset, s.length)).collect();
        assert_eq!(spans, vec![(-27, 2), (25, 1)]);
        assert_eq!(h.positive_deltas, vec![1, 1, 1]);
        assert!(h.negative_spans.is_empty() && h.negative_deltas.is_empty());
        // Encoded and decoded again as a receiver reads it.
        let request = WriteRequest { timeseries: ts };
        assert_eq!(WriteRequest::decode(&request.encode_to_vec()[..]).unwrap(), request);
    }

    #[test]
    fn the_request_round_trips_through_snappy_and_protobuf() {
        let b = batch(&Node::default(), "http://127.0.0.1:1/api/v1/write", "h:1", true);
        let proto = snap::raw::Decoder::new().decompress_vec(&b.body).unwrap();
        let request = WriteRequest::decode(&proto[..]).unwrap();
        assert_eq!(request.timeseries.len() as u64, b.samples);
    }
}
