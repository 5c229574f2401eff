//! Prometheus text format 0.0.4 and OpenMetrics 1.0.0 rendering of collected families.

use std::fmt::Write;

use crate::metrics::{Collected, Desc, Kind, Registry, SeriesData, ValueData};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Go's ParseFloat and the OpenMetrics grammar accept these; Rust's `Display` would print `inf`.
pub fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v:?}");
    }
}

fn escape(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// The label pairs of a sample: constant labels, then the series' own.
struct Labels<'a> {
    constant: &'a [(String, String)],
    names: &'a [String],
    values: &'a [String],
}

/// Writes `{a="x",b="y"}`, with an optional extra pair last (the histogram's `le`).
fn write_labels(out: &mut String, labels: &Labels, extra: Option<(&str, &str)>) {
    if labels.constant.is_empty() && labels.names.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let constant = labels.constant.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let own = labels
        .names
        .iter()
        .map(String::as_str)
        .zip(labels.values.iter().map(String::as_str));
    for (i, (name, value)) in constant.chain(own).chain(extra).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape(out, value, true);
        out.push('"');
    }
    out.push('}');
}

fn write_sample(out: &mut String, name: &str, suffix: &str, labels: &Labels, extra: Option<(&str, &str)>, v: f64) {
    out.push_str(name);
    out.push_str(suffix);
    write_labels(out, labels, extra);
    out.push(' ');
    write_float(out, v);
    out.push('\n');
}

fn write_family(
    out: &mut String,
    desc: &Desc,
    series: &[SeriesData],
    format: Format,
    label_names: &[String],
    constant: &[(String, String)],
) {
    let (type_name, header_name) = match (&desc.kind, format) {
        (Kind::Counter, Format::Text) => ("counter", format!("{}_total", desc.name)),
        (Kind::Counter, Format::OpenMetrics) => ("counter", desc.name.clone()),
        (Kind::Gauge(_), _) => ("gauge", desc.name.clone()),
        (Kind::Histogram(_), _) => ("histogram", desc.name.clone()),
    };
    let _ = write!(out, "# HELP {header_name} ");
    escape(out, &desc.help, format == Format::OpenMetrics);
    let _ = writeln!(out, "\n# TYPE {header_name} {type_name}");
    let mut le = String::new();
    for s in series {
        let labels = &Labels {
            constant,
            names: label_names,
            values: &s.labels,
        };
        match (&desc.kind, &s.value) {
            (Kind::Counter, ValueData::Scalar { value, .. }) => {
                write_sample(out, &desc.name, "_total", labels, None, *value)
            }
            (Kind::Gauge(_), ValueData::Scalar { value, .. }) => {
                write_sample(out, &desc.name, "", labels, None, *value)
            }
            (Kind::Histogram(bounds), ValueData::Histogram { counts, sum }) => {
                let mut cumulative = 0u64;
                for (i, count) in counts.iter().enumerate() {
                    cumulative += count;
                    le.clear();
                    write_float(&mut le, bounds.get(i).copied().unwrap_or(f64::INFINITY));
                    write_sample(out, &desc.name, "_bucket", labels, Some(("le", &le)), cumulative as f64);
                }
                write_sample(out, &desc.name, "_sum", labels, None, *sum);
                // `_count` is the `+Inf` bucket by construction, as both formats require.
                write_sample(out, &desc.name, "_count", labels, None, cumulative as f64);
            }
            _ => {}
        }
    }
}

/// Renders the families, keeping only those named in `only` when it is not empty
/// (as prometheus_client's `name[]` filter, by any of the family's sample names),
/// with `constant` labels on every sample.
pub fn render(collected: &Collected, format: Format, only: &[String], constant: &[(String, String)]) -> String {
    let mut out = String::with_capacity(64 * 1024);
    for (desc, series) in collected {
        if !only.is_empty() && !desc.exposed_names().iter().any(|n| only.contains(n)) {
            continue;
        }
        let mut label_names = desc.label_names.clone();
        if series.first().is_some_and(|s| s.labels.len() > label_names.len()) {
            label_names.push("worker".to_string());
        }
        write_family(&mut out, desc, series, format, &label_names, constant);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// What a scrape of `registry` gets: its families merged with the workers', and its constant labels.
pub fn scrape(registry: &Registry, format: Format, only: &[String]) -> String {
    render(&registry.collect(), format, only, &registry.const_labels())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{GaugeMode, Kind};

    fn floats(v: f64) -> String {
        let mut s = String::new();
        write_float(&mut s, v);
        s
    }

    #[test]
    fn float_forms() {
        assert_eq!(floats(1.0), "1.0");
        assert_eq!(floats(0.005), "0.005");
        assert_eq!(floats(f64::INFINITY), "+Inf");
        assert_eq!(floats(f64::NEG_INFINITY), "-Inf");
        assert_eq!(floats(f64::NAN), "NaN");
        assert_eq!(floats(1e300).parse::<f64>().unwrap(), 1e300);
    }

    fn one(desc: Desc, series: Vec<SeriesData>, format: Format) -> String {
        render(&vec![(desc, series)], format, &[], &[])
    }

    #[test]
    fn counter_escaping_and_suffix() {
        let d = Desc::new("c", "a \\ help\nline \"q\"", Kind::Counter, vec!["l".into()]).unwrap();
        let s = vec![SeriesData {
            labels: vec!["a\"b\\c\nd".into()],
            value: ValueData::Scalar {
                value: 2.0,
                updated: 0.0,
            },
        }];
        assert_eq!(
            one(d.clone(), s.clone(), Format::Text),
            "# HELP c_total a \\\\ help\\nline \"q\"\n# TYPE c_total counter\nc_total{l=\"a\\\"b\\\\c\\nd\"} 2.0\n"
        );
        assert_eq!(
            one(d, s, Format::OpenMetrics),
            "# HELP c a \\\\ help\\nline \\\"q\\\"\n# TYPE c counter\nc_total{l=\"a\\\"b\\\\c\\nd\"} 2.0\n# EOF\n"
        );
    }

    #[test]
    fn histogram_is_cumulative_and_count_is_inf_bucket() {
        let d = Desc::new("h", "h", Kind::Histogram([0.5, 1.0].into()), vec![]).unwrap();
        let s = vec![SeriesData {
            labels: vec![],
            value: ValueData::Histogram {
                counts: vec![1, 2, 3],
                sum: 9.5,
            },
        }];
        assert_eq!(
            one(d, s, Format::Text),
            "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1.0\nh_bucket{le=\"1.0\"} 3.0\n\
             h_bucket{le=\"+Inf\"} 6.0\nh_sum 9.5\nh_count 6.0\n"
        );
    }

    #[test]
    fn worker_label_and_filter() {
        let d = Desc::new("g", "h", Kind::Gauge(GaugeMode::All), vec![]).unwrap();
        let s = vec![SeriesData {
            labels: vec!["w1".into()],
            value: ValueData::Scalar {
                value: 1.0,
                updated: 1.0,
            },
        }];
        let c = vec![(d, s)];
        assert!(render(&c, Format::Text, &[], &[]).contains("g{worker=\"w1\"} 1.0\n"));
        assert_eq!(render(&c, Format::Text, &["other".into()], &[]), "");
        assert_eq!(render(&vec![], Format::OpenMetrics, &[], &[]), "# EOF\n");
        let run = [("run".to_string(), "a\"b".to_string())];
        assert!(render(&c, Format::Text, &[], &run).contains("g{run=\"a\\\"b\",worker=\"w1\"} 1.0\n"));
    }
}
