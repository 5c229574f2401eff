//! What became of one push attempt, read from the receiver's answer: one rule for every protocol.
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
//! Remote write sends the classic series of a histogram beside its native one, so a receiver that drops
//! native histograms still holds the classic buckets.

/// Which histograms a push sends for a histogram with native buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Histograms {
    /// Native (OTLP: exponential) ones, until the receiver refuses them; classic ones from then on.
    Auto,
    Native,
    /// Classic buckets (OTLP: explicit bounds) only.
    Classic,
}

impl Histograms {
    /// Whether native histograms are sent, `fallen_back` telling whether the receiver refused them.
    pub fn native(self, fallen_back: bool) -> bool {
        self == Histograms::Native || (self == Histograms::Auto && !fallen_back)
    }

    pub fn can_fall_back(self) -> bool {
        self == Histograms::Auto
    }
}

/// What became of one attempt; `kind` names the kind of failure (logged once per kind), `message` says it.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Taken, but for `rejected` samples (OTLP's `partial_success`), with the receiver's message.
    Partial {
        rejected: u64,
        message: String,
    },
    /// Worth retrying (5xx, 429, connection and timeout errors).
    Retry {
        kind: String,
        message: String,
    },
    /// Refused for good (other 4xx, or a 5xx whose body says it can never succeed): the batch is dropped.
    Refused {
        kind: String,
        message: String,
    },
    /// The receiver takes no native (OTLP: exponential) histograms, and the batch had some: with `auto`,
    /// it is sent again with classic (explicit) buckets, and so is every later one.
    HistogramsRefused {
        kind: String,
        message: String,
    },
}

/// Lower-case phrases of out-of-order and duplicate refusals (see the module's comment).
const NEVER_SUCCEEDS: [&str; 4] = [
    "out of order sample",
    "out-of-order",
    "duplicate sample for timestamp",
    "sample-duplicate-timestamp",
];

/// Lower-case phrases that, beside the histograms named, say the receiver does not take them.
const NOT_TAKEN: [&str; 4] = ["disabled", "not enabled", "not supported", "unsupported"];

/// Whether a receiver's message says that it can never take the request: out-of-order or duplicate samples.
fn never_succeeds(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    NEVER_SUCCEEDS.iter().any(|p| message.contains(p))
}

/// Whether a receiver's message says that it does not take native or exponential histograms (Prometheus:
/// "native histograms are disabled"; OTLP receivers name the exponential histogram).
fn refuses_native_histograms(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    (message.contains("native histogram") || message.contains("exponential"))
        && NOT_TAKEN.iter().any(|p| message.contains(p))
}

/// The outcome of an HTTP answer with `status` and (the start of) `body`; `native_sent`: whether the batch
/// carried native histograms. A refusal is told apart whatever the status (Prometheus 2 answers 500 for
/// native histograms), since sending the same again cannot succeed.
pub fn classify(status: u16, body: &str, native_sent: bool) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Sent;
    }
    let kind = format!("HTTP {status}");
    // The reason is read in up to 1 KiB (Mimir's comes after the ingester's name); 300 characters are logged.
    let shown: String = body.trim().chars().take(300).collect();
    let message = format!("HTTP {status} {shown}");
    // An out-of-order native histogram is refused for its timestamp, not for being native.
    if never_succeeds(body) {
        Outcome::Refused { kind, message }
    } else if refuses_native_histograms(body) {
        if native_sent {
            Outcome::HistogramsRefused { kind, message }
        } else {
            Outcome::Refused { kind, message }
        }
    } else if status == 429 || status >= 500 {
        Outcome::Retry { kind, message }
    } else {
        Outcome::Refused { kind, message }
    }
}

/// The outcome of a successful answer that says some samples were rejected (`rejected`, `message`).
pub fn classify_partial(rejected: u64, message: String, native_sent: bool) -> Outcome {
    if native_sent && refuses_native_histograms(&message) {
        Outcome::HistogramsRefused {
            kind: "partial success".to_string(),
            message: format!("{rejected} points rejected: {message}"),
        }
    } else {
        Outcome::Partial { rejected, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(outcome: &Outcome) -> &'static str {
        match outcome {
            Outcome::Sent => "sent",
            Outcome::Partial { .. } => "partial",
            Outcome::Retry { .. } => "retry",
            Outcome::Refused { .. } => "refused",
            Outcome::HistogramsRefused { .. } => "histograms",
        }
    }

    #[test]
    fn statuses() {
        for (status, body, native, expected) in [
            (200, "", true, "sent"),
            (204, "native histograms are disabled", true, "sent"),
            (500, "", true, "retry"),
            (503, "overloaded", false, "retry"),
            (429, "", true, "retry"),
            (400, "out of order sample", true, "refused"),
            (404, "", false, "refused"),
            (500, "native histograms are disabled", true, "histograms"),
            (400, "Exponential histograms are not supported", true, "histograms"),
            // Without native histograms in the batch, the same words are an ordinary refusal (the same
            // request again cannot succeed either).
            (400, "exponential histograms are not supported", false, "refused"),
            (500, "native histograms are disabled", false, "refused"),
            // Prometheus 3 (#17196 proposes 422), and the wordings of a refusal of native histograms.
            (422, "Native histograms are disabled", true, "histograms"),
            (
                400,
                "native histogram ingestion is not enabled for this tenant",
                true,
                "histograms",
            ),
            (415, "native histograms not supported", true, "histograms"),
            // A 5xx naming native histograms for another reason is retried.
            (503, "native histogram appender busy", true, "retry"),
            (301, "", false, "refused"),
        ] {
            assert_eq!(
                kind(&classify(status, body, native)),
                expected,
                "{status} {body} {native}"
            );
        }
    }

    #[test]
    fn partial_successes() {
        let why = "exponential histogram data points are not supported".to_string();
        assert_eq!(kind(&classify_partial(3, why.clone(), true)), "histograms");
        assert_eq!(
            classify_partial(3, why.clone(), false),
            Outcome::Partial {
                rejected: 3,
                message: why
            }
        );
        assert_eq!(kind(&classify_partial(1, "too old".into(), true)), "partial");
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
                assert_eq!(kind(&classify(status, body, true)), "refused", "{status} {body}");
            }
        }
    }
}
