//! The Pushgateway: a `PUT` of the text exposition under `job="locust"` and the grouping labels,
//! replacing the group's metrics at each push.

use base64::Engine;

use super::batch::{Batch, JOB};
use crate::distributed::Node;
use crate::exposition::{scrape, Format};

/// `<url>/metrics/job/locust[/<label>/<value>...]`; values that are not plain path segments are
/// base64url-encoded, as the Pushgateway's `<label>@base64` syntax allows.
pub fn group_url(base: &str, grouping: &[(String, String)]) -> String {
    let mut url = format!("{}/metrics/job/{JOB}", base.trim_end_matches('/'));
    for (name, value) in grouping {
        let plain = !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if plain {
            url.push_str(&format!("/{name}/{value}"));
        } else {
            let encoded = base64::engine::general_purpose::URL_SAFE.encode(value);
            url.push_str(&format!(
                "/{name}@base64/{}",
                if encoded.is_empty() { "=" } else { &encoded }
            ));
        }
    }
    url
}

pub fn batch(node: &Node, base: &str, grouping: &[(String, String)]) -> Batch {
    let body = scrape(node, Format::Text, &[]);
    let samples = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .count() as u64;
    Batch {
        url: group_url(base, grouping),
        method: "PUT",
        headers: vec![("Content-Type", Format::Text.content_type().to_string())],
        body,
        samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_urls() {
        assert_eq!(group_url("http://pg:9091/", &[]), "http://pg:9091/metrics/job/locust");
        let run = vec![("run_id".to_string(), "20261127T0501-ab12".to_string())];
        assert_eq!(
            group_url("http://pg:9091", &run),
            "http://pg:9091/metrics/job/locust/run_id/20261127T0501-ab12"
        );
        let odd = vec![("env".to_string(), "a/b".to_string()), ("x".to_string(), String::new())];
        assert_eq!(
            group_url("http://pg", &odd),
            "http://pg/metrics/job/locust/env@base64/YS9i/x@base64/="
        );
    }
}
