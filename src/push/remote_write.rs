//! Prometheus remote write 1.0: a protobuf `WriteRequest` (messages written out by hand, for `prost`
//! derive: no protoc at build time), snappy-compressed, `POST`ed.
//!
//! The series are those of a scrape, read back from the text exposition, so that names, `le` values,
//! the master's merge and the constant labels are exactly a scrape's; `job` and `instance` are added
//! as Prometheus adds them to a scraped target (a clashing exposed label becomes `exported_<name>`).

use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use super::pushgateway::JOB;
use super::Batch;
use crate::exposition::{scrape, Format};
use crate::metrics::global;

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

/// The time series of a text exposition, with `job` and `instance` as a scrape of `instance` gives them.
pub fn series(text: &str, instance: &str, timestamp: i64) -> Vec<TimeSeries> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .map(|(name, exposed, value)| {
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
            for (name, value) in [("__name__", name.as_str()), ("job", JOB), ("instance", instance)] {
                labels.push(Label {
                    name: name.to_string(),
                    value: value.to_string(),
                });
            }
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            TimeSeries {
                labels,
                samples: vec![Sample { value, timestamp }],
            }
        })
        .collect()
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn batch(url: &str, instance: &str) -> Batch {
    let timeseries = series(&scrape(global(), Format::Text, &[]), instance, now_millis());
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
    fn the_request_round_trips_through_snappy_and_protobuf() {
        let b = batch("http://127.0.0.1:1/api/v1/write", "h:1");
        let proto = snap::raw::Decoder::new().decompress_vec(&b.body).unwrap();
        let request = WriteRequest::decode(&proto[..]).unwrap();
        assert_eq!(request.timeseries.len() as u64, b.samples);
    }
}
