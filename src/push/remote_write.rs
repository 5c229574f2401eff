//! Prometheus remote write 1.0: a protobuf `WriteRequest` (messages written out by hand, for `prost`
//! derive: no protoc at build time), snappy-compressed, `POST`ed.
//!
//! The series are a scrape's samples (`exposition::samples`, which the text exposition writes too), so
//! that names, `le` values, the master's merge and the constant labels are exactly a scrape's; `job` and
//! `instance` are added as Prometheus adds them to a scraped target (a clashing exposed label becomes
//! `exported_<name>`).
//!
//! A histogram with native buckets is also sent as a native histogram sample (`TimeSeries.histograms`),
//! under the family's base name as Prometheus stores it, from the same collection.

use std::collections::BTreeMap;

use prost::Message;

use super::batch::{Batch, JOB};
use crate::clock::unix_millis;
use crate::distributed::Node;
use crate::exposition::samples::{self, series_labels, Sink, Value};
use crate::exposition::{label_names, served};
use crate::metrics::{Collected, Kind, NativeSnapshot, ValueData};

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

/// Builds the time series of one family's samples, with `job` and `instance` as a scrape gives them.
struct Series<'a> {
    name: &'a str,
    instance: &'a str,
    timestamp: i64,
    /// The current series' labels, `__name__` aside.
    labels: Vec<Label>,
    out: &'a mut Vec<TimeSeries>,
}

impl Sink for Series<'_> {
    fn series<'a>(&mut self, labels: impl Iterator<Item = (&'a str, &'a str)>) {
        self.labels = scraped_labels(labels, self.instance);
    }

    fn sample(&mut self, suffix: &str, le: Option<&str>, value: Value) {
        let mut labels = self.labels.clone();
        labels.push(label("__name__", &format!("{}{suffix}", self.name)));
        if let Some(le) = le {
            labels.push(label("le", le));
        }
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        self.out.push(TimeSeries {
            labels,
            samples: vec![Sample {
                value: value.as_f64(),
                timestamp: self.timestamp,
            }],
            histograms: Vec::new(),
        });
    }
}

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.to_string(),
        value: value.to_string(),
    }
}

/// The `exposed` labels of a series with `job` and `instance` as a scrape of `instance` gives them (a
/// clashing exposed label becomes `exported_<name>`), unsorted and without `__name__`.
fn scraped_labels<'a>(exposed: impl Iterator<Item = (&'a str, &'a str)>, instance: &str) -> Vec<Label> {
    let mut labels: Vec<Label> = exposed
        .map(|(name, value)| match name {
            "job" | "instance" => label(&format!("exported_{name}"), value),
            _ => label(name, value),
        })
        .collect();
    labels.push(label("job", JOB));
    labels.push(label("instance", instance));
    labels
}

/// The series of a scrape's samples (counters, gauges, and the classic buckets, sum and count of histograms).
pub fn classic_series(
    collected: &Collected,
    constant: &[(String, String)],
    instance: &str,
    timestamp: i64,
) -> Vec<TimeSeries> {
    let mut out = Vec::new();
    for (desc, series) in collected {
        let mut sink = Series {
            name: &desc.name,
            instance,
            timestamp,
            labels: Vec::new(),
            out: &mut out,
        };
        samples::family(desc, series, constant, &mut sink);
    }
    out
}

fn spans(buckets: &BTreeMap<i32, u64>) -> (Vec<BucketSpan>, Vec<i64>) {
    let (spans, deltas) = NativeSnapshot::spans_and_deltas(buckets);
    let spans = spans
        .into_iter()
        .map(|(offset, length)| BucketSpan { offset, length })
        .collect();
    (spans, deltas)
}

fn native_histogram(n: &NativeSnapshot, timestamp: i64) -> Histogram {
    let (positive_spans, positive_deltas) = spans(&n.positive);
    let (negative_spans, negative_deltas) = spans(&n.negative);
    Histogram {
        count_int: Some(n.count),
        sum: n.sum,
        schema: n.schema,
        zero_threshold: n.zero_threshold,
        zero_count_int: Some(n.zero_count),
        negative_spans,
        negative_deltas,
        positive_spans,
        positive_deltas,
        reset_hint: 0,
        timestamp,
    }
}

/// One native histogram series, under the family's base name as Prometheus stores it, for each histogram
/// series with native buckets (those without have only their classic series), as a protobuf scrape has them.
pub fn native_series(
    collected: &Collected,
    constant: &[(String, String)],
    instance: &str,
    timestamp: i64,
) -> Vec<TimeSeries> {
    let mut out = Vec::new();
    for (desc, series) in collected {
        let Kind::Histogram(bounds) = &desc.kind else {
            continue;
        };
        let names = label_names(desc, series);
        for s in series {
            let ValueData::Histogram {
                counts,
                native: Some(n),
                ..
            } = &s.value
            else {
                continue;
            };
            // The exposition leaves out a histogram of another bucket layout: so does remote write.
            if counts.len() != bounds.len() + 1 {
                continue;
            }
            let mut labels = scraped_labels(series_labels(constant, &names, &s.labels), instance);
            labels.push(label("__name__", &desc.name));
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            out.push(TimeSeries {
                labels,
                samples: Vec::new(),
                histograms: vec![native_histogram(n, timestamp)],
            });
        }
    }
    out
}

/// A request carrying the `WriteRequest` encoded in `proto`, of `samples` series, `native` histograms among
/// them or not.
fn request(url: &str, proto: &[u8], samples: u64, native: bool) -> Batch {
    // Compressing a Vec in memory cannot fail but for sizes over 4 GiB, which a scrape never reaches.
    let body = snap::raw::Encoder::new().compress_vec(proto).unwrap_or_default();
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
        native,
        without_native: None,
    }
}

/// The request of one push. `native`: with the native histograms too; `fallback`: able to send the same
/// collection again without them (`Batch::without_native`).
pub fn batch(node: &Node, url: &str, instance: &str, native: bool, fallback: bool) -> Batch {
    // One collection for both, so that the classic and native series agree.
    let constant = node.registry.const_labels();
    batch_of(&served(node), &constant, url, instance, native, fallback)
}

fn batch_of(
    collected: &Collected,
    constant: &[(String, String)],
    url: &str,
    instance: &str,
    native: bool,
    fallback: bool,
) -> Batch {
    let timestamp = unix_millis();
    let classic = classic_series(collected, constant, instance, timestamp);
    let natives = if native {
        native_series(collected, constant, instance, timestamp)
    } else {
        Vec::new()
    };
    let classic_samples = classic.len() as u64;
    let classic = WriteRequest { timeseries: classic }.encode_to_vec();
    if natives.is_empty() {
        return request(url, &classic, classic_samples, false);
    }
    let samples = classic_samples + natives.len() as u64;
    // A repeated field's encodings concatenate: the classic part is encoded once, for both requests.
    let both = [
        classic.as_slice(),
        &WriteRequest { timeseries: natives }.encode_to_vec(),
    ]
    .concat();
    let mut batch = request(url, &both, samples, true);
    if fallback {
        let url = url.to_string();
        batch.without_native = Some(Box::new(move || request(&url, &classic, classic_samples, false)));
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{text, Format};
    use crate::metrics::{Desc, NativeConfig, SeriesData};

    fn labels(ts: &TimeSeries) -> Vec<(&str, &str)> {
        ts.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect()
    }

    fn decode(batch: &Batch) -> WriteRequest {
        let proto = snap::raw::Decoder::new().decompress_vec(&batch.body).unwrap();
        WriteRequest::decode(&proto[..]).unwrap()
    }

    /// A histogram with native buckets (`h`, labelled `job="mine"`), and a classic-only one (`c`).
    fn histograms() -> Collected {
        let native_desc = Desc::new("h", "x", Kind::Histogram([0.1, 1.0].into()), vec!["job".into()])
            .unwrap()
            .with_native(NativeConfig::default());
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
        vec![
            (
                native_desc,
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
        ]
    }

    #[test]
    fn series_carry_job_instance_and_sorted_labels() {
        let desc = Desc::new("c", "help", Kind::Counter, vec!["method".into(), "job".into()]).unwrap();
        let series = vec![SeriesData {
            labels: vec!["GET".into(), "mine".into()],
            value: ValueData::Scalar {
                value: 5.0,
                updated: 0.0,
            },
        }];
        let ts = classic_series(&vec![(desc, series)], &[], "host:9646", 1234);
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
    fn the_classic_series_are_the_text_exposition_samples() {
        let collected = histograms();
        let run = [("run".to_string(), "r1".to_string())];
        let text = text::render(&collected, Format::Text, &[], &run, 0);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let ts = classic_series(&collected, &run, "host:1", 1);
        assert_eq!(ts.len(), lines.len());
        for (series, line) in ts.iter().zip(&lines) {
            let name = labels(series).iter().find(|(n, _)| *n == "__name__").unwrap().1;
            assert!(line.starts_with(&format!("{name}{{run=\"r1\"")), "{line}");
            if let Some(&(_, le)) = labels(series).iter().find(|(n, _)| *n == "le") {
                assert!(line.contains(&format!("le=\"{le}\"")), "{line}");
            }
            let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert_eq!(series.samples[0].value, value, "{line}");
        }
    }

    #[test]
    fn native_buckets_become_a_histogram_sample_under_the_base_name() {
        let run = [("run".to_string(), "r1".to_string())];
        let ts = native_series(&histograms(), &run, "host:1", 99);
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
    fn the_fallback_resends_the_same_collection_without_the_native_series() {
        let collected = histograms();
        let mut both = batch_of(&collected, &[], "http://x/api/v1/write", "h:1", true, true);
        let sent = decode(&both);
        assert_eq!(sent.timeseries.len() as u64, both.samples);
        let natives: Vec<_> = sent.timeseries.iter().filter(|t| !t.histograms.is_empty()).collect();
        assert_eq!(natives.len(), 1);
        let classic = (both.without_native.take().unwrap())();
        let resent = decode(&classic);
        assert_eq!(resent.timeseries.len() as u64, classic.samples);
        assert!(resent.timeseries.iter().all(|t| t.histograms.is_empty()));
        // The very series first sent, the native one aside.
        let first: Vec<_> = sent
            .timeseries
            .into_iter()
            .filter(|t| t.histograms.is_empty())
            .collect();
        assert_eq!(resent.timeseries, first);
        assert!(classic.without_native.is_none());

        let classic_only = batch_of(&collected, &[], "http://x/api/v1/write", "h:1", false, true);
        assert!(decode(&classic_only).timeseries.iter().all(|t| t.histograms.is_empty()));
        assert!(classic_only.without_native.is_none());
        assert!(batch_of(&collected, &[], "http://x", "h:1", true, false)
            .without_native
            .is_none());
    }

    #[test]
    fn the_request_round_trips_through_snappy_and_protobuf() {
        let b = batch(&Node::default(), "http://127.0.0.1:1/api/v1/write", "h:1", true, true);
        assert_eq!(decode(&b).timeseries.len() as u64, b.samples);
    }
}
