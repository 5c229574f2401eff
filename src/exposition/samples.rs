//! The flattened samples of collected families, as a scrape exposes them: each sample's name suffix, `le`
//! and value, after its series' labels (the constant labels first). The text exposition writes them and
//! remote write sends them, so both hold the same series: names, `le` values, the master's merge and the
//! constant labels alike.

use std::fmt::Write;

use super::select::label_names;
use crate::metrics::{write_uint, Desc, Kind, SeriesData, ValueData};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Float(f64),
    /// Bucket and `_count` values: integers in every format.
    Count(u64),
}

impl Value {
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Float(v) => v,
            Value::Count(n) => n as f64,
        }
    }
}

/// Go's ParseFloat and the OpenMetrics grammar accept these; Rust's `Display` would print `inf`.
pub fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        // Counters are whole numbers: the integer path is several times faster than float formatting.
        if v < 0.0 {
            out.push('-');
        }
        write_uint(out, v.abs() as u64);
        out.push_str(".0");
    } else {
        let _ = write!(out, "{v:?}");
    }
}

/// Takes a family's samples in order: each series, then its samples.
pub trait Sink {
    /// A series begins, with its labels (the constant labels first, then the family's own).
    fn series<'a>(&mut self, labels: impl Iterator<Item = (&'a str, &'a str)>);
    /// A sample of that series, named the family's name followed by `suffix`; `le` for a bucket.
    fn sample(&mut self, suffix: &str, le: Option<&str>, value: Value);
}

/// The labels of one series: `constant` first, then the family's `names` with the series' `values`.
pub fn series_labels<'a>(
    constant: &'a [(String, String)],
    names: &'a [String],
    values: &'a [String],
) -> impl Iterator<Item = (&'a str, &'a str)> {
    let own = names.iter().zip(values).map(|(n, v)| (n.as_str(), v.as_str()));
    constant.iter().map(|(n, v)| (n.as_str(), v.as_str())).chain(own)
}

/// The `le` of each bucket, `+Inf` last: the same strings in every format, so that a series' identity does
/// not depend on the format.
fn les(desc: &Desc) -> Vec<String> {
    let Kind::Histogram(bounds) = &desc.kind else {
        return Vec::new();
    };
    bounds
        .iter()
        .chain([f64::INFINITY].iter())
        .map(|b| {
            let mut le = String::new();
            write_float(&mut le, *b);
            le
        })
        .collect()
}

/// Gives `sink` the samples of one family, with `constant` labels on every series.
pub fn family(desc: &Desc, series: &[SeriesData], constant: &[(String, String)], sink: &mut impl Sink) {
    let names = label_names(desc, series);
    let les = les(desc);
    for s in series {
        sink.series(series_labels(constant, &names, &s.labels));
        match (&desc.kind, &s.value) {
            (Kind::Counter, ValueData::Scalar { value, .. }) => sink.sample("_total", None, Value::Float(*value)),
            (Kind::Gauge(_), ValueData::Scalar { value, .. }) => sink.sample("", None, Value::Float(*value)),
            // Another bucket layout cannot be written with these `le`s (the master refuses such reports).
            (Kind::Histogram(_), ValueData::Histogram { counts, sum, .. }) if counts.len() == les.len() => {
                let mut cumulative = 0u64;
                for (count, le) in counts.iter().zip(&les) {
                    cumulative += count;
                    sink.sample("_bucket", Some(le), Value::Count(cumulative));
                }
                sink.sample("_sum", None, Value::Float(*sum));
                // `_count` is the `+Inf` bucket by construction, as the text formats require.
                sink.sample("_count", None, Value::Count(cumulative));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Labels = Vec<(String, String)>;

    /// Every sample as `(labels, suffix, le, value)`.
    #[derive(Default)]
    struct Flat {
        labels: Labels,
        samples: Vec<(Labels, String, Option<String>, f64)>,
    }

    impl Sink for Flat {
        fn series<'a>(&mut self, labels: impl Iterator<Item = (&'a str, &'a str)>) {
            self.labels = labels.map(|(n, v)| (n.to_string(), v.to_string())).collect();
        }
        fn sample(&mut self, suffix: &str, le: Option<&str>, value: Value) {
            let sample = (
                self.labels.clone(),
                suffix.to_string(),
                le.map(str::to_string),
                value.as_f64(),
            );
            self.samples.push(sample);
        }
    }

    #[test]
    fn histogram_samples_are_cumulative_with_constant_labels_first() {
        let d = Desc::new("h", "h", Kind::Histogram([0.5, 1.0].into()), vec!["m".into()]).unwrap();
        let s = vec![SeriesData {
            labels: vec!["GET".into()],
            value: ValueData::Histogram {
                counts: vec![1, 2, 3],
                sum: 9.5,
                native: None,
            },
        }];
        let mut flat = Flat::default();
        family(&d, &s, &[("run".into(), "r1".into())], &mut flat);
        let labels = vec![
            ("run".to_string(), "r1".to_string()),
            ("m".to_string(), "GET".to_string()),
        ];
        let got: Vec<_> = flat
            .samples
            .iter()
            .map(|(_, suffix, le, v)| (suffix.as_str(), le.as_deref(), *v))
            .collect();
        assert_eq!(
            got,
            vec![
                ("_bucket", Some("0.5"), 1.0),
                ("_bucket", Some("1.0"), 3.0),
                ("_bucket", Some("+Inf"), 6.0),
                ("_sum", None, 9.5),
                ("_count", None, 6.0)
            ]
        );
        assert!(flat.samples.iter().all(|(l, ..)| *l == labels));
    }

    #[test]
    fn a_histogram_of_another_layout_has_no_samples() {
        let d = Desc::new("h", "h", Kind::Histogram([0.5].into()), vec![]).unwrap();
        let s = vec![SeriesData {
            labels: vec![],
            value: ValueData::Histogram {
                counts: vec![1, 2, 3],
                sum: 1.0,
                native: None,
            },
        }];
        let mut flat = Flat::default();
        family(&d, &s, &[], &mut flat);
        assert!(flat.samples.is_empty());
    }
}
