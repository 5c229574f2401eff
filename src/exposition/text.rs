//! Prometheus text format 0.0.4 and OpenMetrics 1.0.0 rendering of collected families.

use std::fmt::Write;

use super::format::Format;
use super::samples::{self, write_float, Sink, Value};
use super::select::selected;
use crate::metrics::{write_uint, Collected, Desc, Kind, SeriesData};

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

/// Writes a family's samples as lines, each series' labels escaped once and shared by its samples.
struct Lines<'a> {
    out: &'a mut String,
    name: &'a str,
    /// `a="x",b="y"` of the current series.
    labels: String,
}

impl Sink for Lines<'_> {
    fn series<'l>(&mut self, labels: impl Iterator<Item = (&'l str, &'l str)>) {
        self.labels.clear();
        for (i, (name, value)) in labels.enumerate() {
            if i > 0 {
                self.labels.push(',');
            }
            self.labels.push_str(name);
            self.labels.push_str("=\"");
            escape(&mut self.labels, value, true);
            self.labels.push('"');
        }
    }

    /// One line: `name_suffix{labels,le="x"} value`.
    fn sample(&mut self, suffix: &str, le: Option<&str>, value: Value) {
        let (out, labels) = (&mut *self.out, &self.labels);
        out.push_str(self.name);
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
}

fn write_family(out: &mut String, desc: &Desc, series: &[SeriesData], format: Format, constant: &[(String, String)]) {
    let (type_name, header_name) = match (&desc.kind, format) {
        (Kind::Counter, Format::OpenMetrics) => ("counter", desc.name.clone()),
        (Kind::Counter, _) => ("counter", format!("{}_total", desc.name)),
        (Kind::Gauge(_), _) => ("gauge", desc.name.clone()),
        (Kind::Histogram(_), _) => ("histogram", desc.name.clone()),
    };
    let _ = write!(out, "# HELP {header_name} ");
    escape(out, &desc.help, format == Format::OpenMetrics);
    let _ = writeln!(out, "\n# TYPE {header_name} {type_name}");
    let mut lines = Lines {
        out,
        name: &desc.name,
        labels: String::new(),
    };
    samples::family(desc, series, constant, &mut lines);
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
            write_family(&mut out, desc, series, format, constant);
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
    use crate::metrics::{GaugeMode, Kind, ValueData};

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
