//! Prometheus text format 0.0.4 and OpenMetrics 1.0.0 rendering of collected families.

use std::fmt::Write;

use super::format::Format;
use super::select::{label_names, selected};
use crate::metrics::{write_uint, Collected, Desc, Kind, SeriesData, ValueData};

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

fn escape(out: &mut String, s: &str, quote: bool) {
    if !s.bytes().any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"')) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// `a="x",b="y"` for one series, constant labels first: escaped once, shared by all its samples.
fn label_text(constant: &[(String, String)], names: &[String], values: &[String]) -> String {
    let mut text = String::new();
    let constant = constant.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let own = names.iter().map(String::as_str).zip(values.iter().map(String::as_str));
    for (i, (name, value)) in constant.chain(own).enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(name);
        text.push_str("=\"");
        escape(&mut text, value, true);
        text.push('"');
    }
    text
}

enum Value {
    Float(f64),
    /// Bucket and `_count` values, integers in both formats.
    Count(u64),
}

/// One line: `name_suffix{labels,le="x"} value`.
fn write_sample(out: &mut String, name: &str, suffix: &str, labels: &str, le: Option<&str>, value: Value) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        out.push_str(labels);
        if let Some(le) = le {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str("le=\"");
            out.push_str(le);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    match value {
        Value::Float(v) => write_float(out, v),
        Value::Count(n) => write_uint(out, n),
    }
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
        (Kind::Counter, Format::OpenMetrics) => ("counter", desc.name.clone()),
        (Kind::Counter, _) => ("counter", format!("{}_total", desc.name)),
        (Kind::Gauge(_), _) => ("gauge", desc.name.clone()),
        (Kind::Histogram(_), _) => ("histogram", desc.name.clone()),
    };
    let _ = write!(out, "# HELP {header_name} ");
    escape(out, &desc.help, format == Format::OpenMetrics);
    let _ = writeln!(out, "\n# TYPE {header_name} {type_name}");
    // The same `le` strings in both formats, so series identity does not depend on the format.
    let les: Vec<String> = match &desc.kind {
        Kind::Histogram(bounds) => bounds
            .iter()
            .chain([f64::INFINITY].iter())
            .map(|b| {
                let mut le = String::new();
                write_float(&mut le, *b);
                le
            })
            .collect(),
        _ => Vec::new(),
    };
    for s in series {
        let labels = label_text(constant, label_names, &s.labels);
        match (&desc.kind, &s.value) {
            (Kind::Counter, ValueData::Scalar { value, .. }) => {
                write_sample(out, &desc.name, "_total", &labels, None, Value::Float(*value))
            }
            (Kind::Gauge(_), ValueData::Scalar { value, .. }) => {
                write_sample(out, &desc.name, "", &labels, None, Value::Float(*value))
            }
            // Another bucket layout cannot be rendered with these `le`s (the master refuses such reports).
            (Kind::Histogram(_), ValueData::Histogram { counts, sum, .. }) if counts.len() == les.len() => {
                let mut cumulative = 0u64;
                for (count, le) in counts.iter().zip(&les) {
                    cumulative += count;
                    write_sample(out, &desc.name, "_bucket", &labels, Some(le), Value::Count(cumulative));
                }
                write_sample(out, &desc.name, "_sum", &labels, None, Value::Float(*sum));
                // `_count` is the `+Inf` bucket by construction, as both formats require.
                write_sample(out, &desc.name, "_count", &labels, None, Value::Count(cumulative));
            }
            _ => {}
        }
    }
}

/// Renders the families, keeping only those named in `only` when it is not empty (as prometheus_client's
/// `name[]` filter, by any of the family's sample names), with `constant` labels on every sample, into a
/// buffer of `capacity` bytes to start with.
pub fn render(
    collected: &Collected,
    format: Format,
    only: &[String],
    constant: &[(String, String)],
    capacity: usize,
) -> String {
    let mut out = String::with_capacity(capacity);
    for (desc, series) in collected {
        if selected(desc, only) {
            write_family(&mut out, desc, series, format, &label_names(desc, series), constant);
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
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
        assert_eq!(floats(-42.0), "-42.0");
        assert_eq!(floats(0.0), "0.0");
        assert_eq!(floats(123456789012345.0), "123456789012345.0");
        assert_eq!(floats(1e15).parse::<f64>().unwrap(), 1e15);
        assert_eq!(floats(2.5e-7).parse::<f64>().unwrap(), 2.5e-7);
        assert_eq!(floats(1e300).parse::<f64>().unwrap(), 1e300);
    }

    fn one(desc: Desc, series: Vec<SeriesData>, format: Format) -> String {
        render(&vec![(desc, series)], format, &[], &[], 0)
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
                native: None,
            },
        }];
        assert_eq!(
            one(d, s, Format::Text),
            "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"1.0\"} 3\n\
             h_bucket{le=\"+Inf\"} 6\nh_sum 9.5\nh_count 6\n"
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
        assert!(render(&c, Format::Text, &[], &[], 0).contains("g{worker=\"w1\"} 1.0\n"));
        assert_eq!(render(&c, Format::Text, &["other".into()], &[], 0), "");
        assert_eq!(render(&vec![], Format::OpenMetrics, &[], &[], 0), "# EOF\n");
        let run = [("run".to_string(), "a\"b".to_string())];
        assert!(render(&c, Format::Text, &[], &run, 0).contains("g{run=\"a\\\"b\",worker=\"w1\"} 1.0\n"));
    }
}
