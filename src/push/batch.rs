//! What one push sends, whatever the protocol.

/// The `job` label of pushed metrics, as the scrape job of the documented Prometheus configuration names it.
pub const JOB: &str = "locust";

/// One request ready to send: the body and what it holds.
pub struct Batch {
    pub url: String,
    pub method: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub samples: u64,
}
