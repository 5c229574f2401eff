//! What a receiver's answer to a push means for the batch: one rule for every push protocol.
//!
//! A refusal is an answer that the same request can never turn into a success: retrying it only delays
//! the end of the run. Receivers word them their own way, and some answer them with a 5xx:
//! - Prometheus (2.40 to 3.x, Debian's 2.42 included), native histograms sent while the feature is off:
//!   `storage.ErrNativeHistogramsDisabled`, "native histograms are disabled", answered 500
//!   (prometheus/prometheus#17181; #17196 proposes 422). Out-of-order and duplicate samples:
//!   "out of order sample", "duplicate sample for timestamp", answered 400.
//! - Mimir: "... out-of-order samples are not allowed (err-mimir-sample-out-of-order)", "... another
//!   sample with the same timestamp, but a different value, has already been ingested
//!   (err-mimir-sample-duplicate-timestamp)", "out-of-order native histogram ingestion is disabled",
//!   answered 400. With native histogram ingestion off it drops them and answers 2xx.
//! - Thanos receive: "add N samples: out of order sample", "... duplicate sample for timestamp",
//!   answered 409 (or inside a 500 when replicas disagree). Without `--tsdb.enable-native-histograms` it
//!   drops the histograms and answers 2xx.
//! - VictoriaMetrics stores out-of-order and duplicate samples, and takes native histograms (older
//!   versions ignore them, newer ones convert them to its own buckets), answering 2xx.
//!
//! The classic series of a histogram are always sent beside its native one, so a receiver that drops
//! native histograms still holds the classic buckets.

/// What became of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// May succeed later (connection errors, timeouts, 429, other 5xx): retried with backoff.
    Retry,
    /// Can never succeed as sent (a 4xx, or a 5xx saying so): dropped, never retried.
    Refused,
    /// Refused because it holds native histograms: the same data may go again without them.
    NativeHistogramsRefused,
}

/// Lower-case phrases of out-of-order and duplicate refusals (see the module's comment).
const NEVER_SUCCEEDS: [&str; 4] = [
    "out of order sample",
    "out-of-order",
    "duplicate sample for timestamp",
    "sample-duplicate-timestamp",
];

/// Lower-case phrases that, beside "native histogram", say the receiver does not take them.
const NATIVE_OFF: [&str; 4] = ["disabled", "not enabled", "not supported", "unsupported"];

/// The meaning of an HTTP answer of `status` with `body` (its first bytes are enough).
pub fn classify(status: u16, body: &str) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Sent;
    }
    let body = body.to_ascii_lowercase();
    // An out-of-order native histogram is refused for its timestamp, not for being native.
    if NEVER_SUCCEEDS.iter().any(|p| body.contains(p)) {
        return Outcome::Refused;
    }
    if body.contains("native histogram") && NATIVE_OFF.iter().any(|p| body.contains(p)) {
        return Outcome::NativeHistogramsRefused;
    }
    match status {
        429 | 500.. => Outcome::Retry,
        _ => Outcome::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successes_and_plain_statuses() {
        assert_eq!(classify(200, ""), Outcome::Sent);
        assert_eq!(classify(204, "native histograms are disabled"), Outcome::Sent);
        for status in [500, 502, 503, 504, 429] {
            assert_eq!(classify(status, "busy"), Outcome::Retry, "{status}");
        }
        for status in [400, 401, 403, 404, 409, 413, 422] {
            assert_eq!(classify(status, ""), Outcome::Refused, "{status}");
        }
        // Redirects are not followed: the URL is wrong, and stays wrong.
        assert_eq!(classify(301, ""), Outcome::Refused);
    }

    #[test]
    fn native_histograms_disabled_in_every_wording_and_status() {
        for (status, body) in [
            (500, "native histograms are disabled\n"),
            (400, "native histograms are disabled"),
            (422, "Native histograms are disabled"),
            (400, "native histogram ingestion is not enabled for this tenant"),
            (415, "native histograms not supported"),
        ] {
            assert_eq!(
                classify(status, body),
                Outcome::NativeHistogramsRefused,
                "{status} {body}"
            );
        }
    }

    #[test]
    fn out_of_order_and_duplicates_are_refusals_even_as_a_5xx() {
        for body in [
            "out of order sample",
            "store locally for endpoint 127.0.0.1:10901: add 3 samples: out of order sample",
            "add 1 samples: duplicate sample for timestamp",
            "the sample has been rejected because another sample with a more recent timestamp has already been \
             ingested and out-of-order samples are not allowed (err-mimir-sample-out-of-order)",
            "the sample has been rejected because another sample with the same timestamp, but a different value, \
             has already been ingested (err-mimir-sample-duplicate-timestamp)",
            "out-of-order native histogram ingestion is disabled",
        ] {
            for status in [400, 409, 500, 503] {
                assert_eq!(classify(status, body), Outcome::Refused, "{status} {body}");
            }
        }
    }

    #[test]
    fn a_5xx_naming_native_histograms_otherwise_is_retried() {
        assert_eq!(classify(503, "native histogram appender busy"), Outcome::Retry);
    }
}
