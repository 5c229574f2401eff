//! The exposition formats, and which one (and whether gzip) a client's `Accept` headers ask for.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
    /// Length-delimited `MetricFamily` messages: the only one with native histograms.
    Protobuf,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Protobuf => PROTOBUF,
        }
    }
}

const PROTOBUF: &str = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Whether a media range of an `Accept` header (lower-cased range, its parameters) names the protobuf format.
fn is_protobuf_range(range: &str, params: &[(String, String)]) -> bool {
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    range == "application/vnd.google.protobuf"
        && param("proto") == Some("io.prometheus.client.MetricFamily")
        && param("encoding") == Some("delimited")
}

/// The media ranges of an `Accept`-like header with their q-values.
fn ranges(value: &str) -> impl Iterator<Item = (String, f64, Vec<(String, String)>)> + '_ {
    value.split(',').filter_map(|part| {
        let mut pieces = part.split(';');
        let range = pieces.next()?.trim().to_ascii_lowercase();
        let mut q = 1.0;
        let mut params = Vec::new();
        for p in pieces {
            let (k, v) = p.split_once('=')?;
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string());
            if k == "q" {
                q = v.parse().ok().filter(|q: &f64| (0.0..=1.0).contains(q))?;
            } else {
                params.push((k, v));
            }
        }
        (!range.is_empty()).then_some((range, q, params))
    })
}

/// OpenMetrics 1.0.0 or protobuf when the client prefers it by q-value, text 0.0.4 otherwise.
pub fn negotiate_format(accept: &str) -> Format {
    let mut best = (Format::Text, 0.0);
    for (range, q, params) in ranges(accept) {
        let version = params.iter().find(|(k, _)| k == "version").map(|(_, v)| v.as_str());
        let format = match (range.as_str(), version) {
            ("application/openmetrics-text", None | Some("1.0.0") | Some("0.0.1")) => Format::OpenMetrics,
            ("text/plain" | "text/*" | "*/*", _) => Format::Text,
            (range, _) if is_protobuf_range(range, &params) => Format::Protobuf,
            _ => continue,
        };
        if q > best.1 || (q == best.1 && q > 0.0 && format == Format::OpenMetrics) {
            best = (format, q);
        }
    }
    best.0
}

/// Whether `gzip` is acceptable: named (or `*`) with a q-value above zero.
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut star = false;
    for (coding, q, _) in ranges(accept_encoding) {
        match coding.as_str() {
            "gzip" => return q > 0.0,
            "*" => star = q > 0.0,
            _ => {}
        }
    }
    star
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
        version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn format_negotiation() {
        assert_eq!(negotiate_format(PROMETHEUS_ACCEPT), Format::OpenMetrics);
        assert_eq!(negotiate_format(""), Format::Text);
        assert_eq!(negotiate_format("*/*"), Format::Text);
        assert_eq!(negotiate_format("foo/bar"), Format::Text);
        assert_eq!(negotiate_format(&",".repeat(10_000)), Format::Text);
        assert_eq!(
            negotiate_format("application/openmetrics-text;q=0.2,text/plain;q=0.9"),
            Format::Text
        );
        assert_eq!(
            negotiate_format("application/openmetrics-text;version=2.0.0"),
            Format::Text
        );
        assert_eq!(negotiate_format("application/openmetrics-text;q=0"), Format::Text);
        // What Prometheus sends once native histograms are enabled.
        let with_protobuf = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
            encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(negotiate_format(with_protobuf), Format::Protobuf);
        assert_eq!(
            negotiate_format("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;q=0.9"),
            Format::Text,
            "not delimited"
        );
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("br, gzip;q=0.5"));
        assert!(accepts_gzip("*"));
        for no in ["", "gzip;q=0", "identity", "br", "x-gzip", "notgzip", "*;q=0"] {
            assert!(!accepts_gzip(no), "{no}");
        }
    }

    #[test]
    fn only_protobuf_delimited_metric_families_are_taken() {
        let p = |s: &[(&str, &str)]| {
            s.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let ok = p(&[
            ("proto", "io.prometheus.client.MetricFamily"),
            ("encoding", "delimited"),
        ]);
        assert!(is_protobuf_range("application/vnd.google.protobuf", &ok));
        assert!(!is_protobuf_range("application/vnd.google.protobuf", &ok[..1]));
        assert!(!is_protobuf_range("text/plain", &ok));
        let text = p(&[("proto", "io.prometheus.client.MetricFamily"), ("encoding", "text")]);
        assert!(!is_protobuf_range("application/vnd.google.protobuf", &text));
    }
}
