//! The protobuf exposition (`io.prometheus.client.MetricFamily`, length-delimited): the format a
//! Prometheus with native histograms enabled asks for, carrying classic and native buckets alike.

use prost::Message;

use super::select::{label_names, selected};
use crate::metrics::{Collected, Kind, NativeSnapshot, ValueData};

// The messages of Prometheus' `io/prometheus/client/metrics.proto` (proto2) that are used here,
// with its field numbers; repeated scalars unpacked, as proto2 declares them.

#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Gauge {
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Counter {
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Bucket {
    #[prost(uint64, optional, tag = "1")]
    pub cumulative_count: Option<u64>,
    #[prost(double, optional, tag = "2")]
    pub upper_bound: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct BucketSpan {
    #[prost(sint32, optional, tag = "1")]
    pub offset: Option<i32>,
    #[prost(uint32, optional, tag = "2")]
    pub length: Option<u32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    #[prost(message, repeated, tag = "3")]
    pub bucket: Vec<Bucket>,
    #[prost(sint32, optional, tag = "5")]
    pub schema: Option<i32>,
    #[prost(double, optional, tag = "6")]
    pub zero_threshold: Option<f64>,
    #[prost(uint64, optional, tag = "7")]
    pub zero_count: Option<u64>,
    #[prost(message, repeated, tag = "9")]
    pub negative_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, packed = "false", tag = "10")]
    pub negative_delta: Vec<i64>,
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, packed = "false", tag = "13")]
    pub positive_delta: Vec<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Metric {
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    #[prost(message, optional, tag = "2")]
    pub gauge: Option<Gauge>,
    #[prost(message, optional, tag = "3")]
    pub counter: Option<Counter>,
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<Histogram>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
    Histogram = 4,
}

#[derive(Clone, PartialEq, Message)]
pub struct MetricFamily {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub help: Option<String>,
    #[prost(enumeration = "MetricType", optional, tag = "3")]
    pub r#type: Option<i32>,
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
}

fn spans(buckets: &std::collections::BTreeMap<i32, u64>) -> (Vec<BucketSpan>, Vec<i64>) {
    let (spans, deltas) = NativeSnapshot::spans_and_deltas(buckets);
    let spans = spans
        .into_iter()
        .map(|(offset, length)| BucketSpan {
            offset: Some(offset),
            length: Some(length),
        })
        .collect();
    (spans, deltas)
}

fn histogram(bounds: &[f64], counts: &[u64], sum: f64, native: Option<&NativeSnapshot>) -> Histogram {
    // The native count and sum when there are native buckets, so that they add up in the message;
    // the classic buckets are capped by it (an observation may land between the two reads).
    let (count, sum) = native.map_or((counts.iter().sum(), sum), |n| (n.count, n.sum));
    let mut cumulative = 0;
    // `+Inf` is left out: it is the sample count, as client_golang does.
    let bucket = bounds
        .iter()
        .zip(counts)
        .map(|(bound, n)| {
            cumulative += n;
            Bucket {
                cumulative_count: Some(cumulative.min(count)),
                upper_bound: Some(*bound),
            }
        })
        .collect();
    let mut h = Histogram {
        sample_count: Some(count),
        sample_sum: Some(sum),
        bucket,
        ..Histogram::default()
    };
    if let Some(n) = native {
        (h.positive_span, h.positive_delta) = spans(&n.positive);
        (h.negative_span, h.negative_delta) = spans(&n.negative);
        h.schema = Some(n.schema);
        // Never zero: a threshold is what tells Prometheus 2.42 that a histogram is native.
        h.zero_threshold = Some(n.zero_threshold);
        h.zero_count = Some(n.zero_count);
    }
    h
}

/// Encodes the families (those named in `only`, if any) as length-delimited `MetricFamily` messages.
pub fn render(collected: &Collected, only: &[String], constant: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (desc, series) in collected {
        if !selected(desc, only) || series.is_empty() {
            continue;
        }
        let label_names = label_names(desc, series);
        let (name, kind) = match desc.kind {
            Kind::Counter => (format!("{}_total", desc.name), MetricType::Counter),
            Kind::Gauge(_) => (desc.name.clone(), MetricType::Gauge),
            Kind::Histogram(_) => (desc.name.clone(), MetricType::Histogram),
        };
        let metric = series
            .iter()
            .map(|s| {
                let own = label_names.iter().zip(&s.labels);
                let label = constant
                    .iter()
                    .map(|(n, v)| (n, v))
                    .chain(own)
                    .map(|(n, v)| LabelPair {
                        name: Some(n.clone()),
                        value: Some(v.clone()),
                    })
                    .collect();
                let mut m = Metric {
                    label,
                    ..Metric::default()
                };
                match (&desc.kind, &s.value) {
                    (Kind::Counter, ValueData::Scalar { value, .. }) => {
                        m.counter = Some(Counter { value: Some(*value) })
                    }
                    (Kind::Gauge(_), ValueData::Scalar { value, .. }) => m.gauge = Some(Gauge { value: Some(*value) }),
                    (Kind::Histogram(bounds), ValueData::Histogram { counts, sum, native })
                        if counts.len() == bounds.len() + 1 =>
                    {
                        m.histogram = Some(histogram(bounds, counts, *sum, native.as_deref()));
                    }
                    _ => {}
                }
                m
            })
            .collect();
        let family = MetricFamily {
            name: Some(name),
            help: Some(desc.help.clone()),
            r#type: Some(kind as i32),
            metric,
        };
        // Writing into a Vec cannot fail: it grows as needed.
        let _ = family.encode_length_delimited(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Desc, GaugeMode, NativeConfig, SeriesData};

    fn decode_all(mut bytes: &[u8]) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            out.push(MetricFamily::decode_length_delimited(&mut bytes).unwrap());
        }
        out
    }

    #[test]
    fn families_carry_classic_and_native_buckets() {
        let counter = Desc::new("c", "help", Kind::Counter, vec!["a".into()]).unwrap();
        let gauge = Desc::new("g", "", Kind::Gauge(GaugeMode::All), vec![]).unwrap();
        let hist = Desc::new("h", "x", Kind::Histogram([0.1, 1.0].into()), vec![])
            .unwrap()
            .with_native(NativeConfig::default());
        let mut native = NativeSnapshot::empty(&NativeConfig::default());
        native.positive = [(-27, 1), (-26, 2), (0, 3)].into_iter().collect();
        native.negative = [(5, 1)].into_iter().collect();
        native.zero_count = 1;
        (native.count, native.sum) = (8, 1.5);
        let collected = vec![
            (
                counter,
                vec![SeriesData {
                    labels: vec!["x".into()],
                    value: ValueData::Scalar {
                        value: 3.0,
                        updated: 0.0,
                    },
                }],
            ),
            (
                gauge,
                vec![SeriesData {
                    labels: vec!["w1".into()],
                    value: ValueData::Scalar {
                        value: 2.0,
                        updated: 1.0,
                    },
                }],
            ),
            (
                hist,
                vec![SeriesData {
                    labels: vec![],
                    value: ValueData::Histogram {
                        counts: vec![3, 3, 2],
                        sum: 1.5,
                        native: Some(Box::new(native)),
                    },
                }],
            ),
        ];
        let run = [("run".to_string(), "r1".to_string())];
        let got = decode_all(&render(&collected, &[], &run));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].name.as_deref(), Some("c_total"));
        assert_eq!(got[0].metric[0].counter.as_ref().unwrap().value, Some(3.0));
        let labels: Vec<_> = got[0].metric[0].label.iter().map(|l| l.name.clone().unwrap()).collect();
        assert_eq!(labels, vec!["run", "a"]);
        assert_eq!(got[1].metric[0].label[1].value.as_deref(), Some("w1"), "worker label");
        let h = got[2].metric[0].histogram.as_ref().unwrap();
        assert_eq!(got[2].r#type, Some(MetricType::Histogram as i32));
        assert_eq!((h.sample_count, h.sample_sum), (Some(8), Some(1.5)));
        let cumulative: Vec<_> = h
            .bucket
            .iter()
            .map(|b| (b.upper_bound.unwrap(), b.cumulative_count.unwrap()))
            .collect();
        assert_eq!(cumulative, vec![(0.1, 3), (1.0, 6)]);
        assert_eq!((h.schema, h.zero_count), (Some(3), Some(1)));
        let spans: Vec<_> = h
            .positive_span
            .iter()
            .map(|s| (s.offset.unwrap(), s.length.unwrap()))
            .collect();
        assert_eq!(spans, vec![(-27, 2), (25, 1)]);
        assert_eq!(h.positive_delta, vec![1, 1, 1]);
        assert_eq!(h.negative_delta, vec![1]);
        assert!(render(&collected, &["nothing".into()], &[]).is_empty());
    }
}
