//! What every connection of one server shares: what it serves, its limits, counters and web config.

use std::net::SocketAddr;
use std::sync::Arc;

use super::conn::Limits;
use super::live_config::LiveConfig;
use super::scrape_log::ScrapeLog;
use super::stats::Stats;
use crate::distributed::Node;
use crate::log_once::LogOnce;

/// What every connection of one server shares.
pub struct Shared {
    /// What `/metrics` serves.
    pub node: Arc<Node>,
    /// When `/metrics` was scraped in full, for the end of a run.
    pub scrapes: Arc<ScrapeLog>,
    pub limits: Limits,
    pub stats: Stats,
    pub addr: SocketAddr,
    /// TLS, basic auth, headers and rate limit of a web config file; `None`: plain HTTP, open.
    pub web: Option<LiveConfig>,
    /// The kinds of error already logged.
    pub logged: LogOnce,
}

impl Shared {
    /// Logs an error of the server's threads the first time its `kind` happens: they never call into
    /// Python's logging, so this goes to stderr. Every occurrence is counted in the server's own metrics.
    pub fn log_once(&self, kind: &str, message: impl FnOnce() -> String) {
        if self.logged.first(kind) {
            eprintln!("locust-prometheus-exporter: {}; this error is logged once.", message());
        }
    }
}
