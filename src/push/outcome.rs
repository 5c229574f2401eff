//! What became of one push attempt, read from the receiver's answer: one rule for every protocol.

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
    /// Refused for good (other 4xx): the batch is dropped.
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

/// Whether a receiver's message says that it refused native or exponential histograms (Prometheus:
/// "native histograms are disabled"; OTLP receivers name the exponential histogram).
fn names_native_histograms(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("native histogram") || message.contains("exponential")
}

/// The outcome of an HTTP answer with `status` and (the start of) `body`; `native_sent`: whether the batch
/// carried native histograms. A refusal of those is told apart whatever the status (Prometheus 2 answers
/// 500), since sending them again cannot succeed.
pub fn classify(status: u16, body: &str, native_sent: bool) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Sent;
    }
    let kind = format!("HTTP {status}");
    let message = format!("HTTP {status} {}", body.trim());
    if native_sent && names_native_histograms(body) {
        Outcome::HistogramsRefused { kind, message }
    } else if status == 429 || status >= 500 {
        Outcome::Retry { kind, message }
    } else {
        Outcome::Refused { kind, message }
    }
}

/// The outcome of a successful answer that says some samples were rejected (`rejected`, `message`).
pub fn classify_partial(rejected: u64, message: String, native_sent: bool) -> Outcome {
    if native_sent && names_native_histograms(&message) {
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
            // Without native histograms in the batch, the same words are an ordinary refusal.
            (400, "exponential histograms are not supported", false, "refused"),
            (500, "native histograms are disabled", false, "retry"),
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
}
