//! Pushing the metrics out (Prometheus remote write, Pushgateway) from a native thread, for runs
//! that cannot be scraped or that end before the next scrape. Python never waits on it, except for
//! the final push at quit, which it waits for without the GIL.

mod batch;
pub mod pushgateway;
pub mod remote_write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::{Condvar, Mutex};
use ureq::http::Uri;
use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
use ureq::Agent;

use crate::distributed::Node;
use crate::errors::{ExporterError, Result};
use crate::fork;
use crate::log_once::LogOnce;
use batch::Batch;

/// Longest time one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Bytes of an error response kept for the log.
const ERROR_BODY: u64 = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `native`: whether the native histograms are sent too, beside the classic buckets.
    RemoteWrite {
        native: bool,
    },
    Pushgateway,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::RemoteWrite { .. } => "remote write",
            Protocol::Pushgateway => "Pushgateway",
        }
    }
}

/// Credentials, from the environment only (never the command line, where `ps` shows them).
pub enum Auth {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

impl Auth {
    fn header(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
        }
    }
}

pub struct PushConfig {
    /// What is pushed.
    pub node: Arc<Node>,
    pub protocol: Protocol,
    pub url: String,
    pub interval: Duration,
    pub auth: Auth,
    /// PEM file of the CA certificates to trust instead of the bundled web roots.
    pub ca_file: Option<String>,
    /// `host:port` of this process, the `instance` label a scrape would give.
    pub instance: String,
    /// Headers added to every request, such as Mimir's tenant, `X-Scope-OrgID`.
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Stats {
    pub sent: u64,
    pub failed: u64,
    pub dropped_samples: u64,
}

#[derive(Default)]
struct State {
    stop: bool,
    final_requested: bool,
    final_done: bool,
    /// Pushgateway grouping labels after `job` (`run_id`), as URL path segments.
    grouping: Vec<(String, String)>,
    stats: Stats,
    /// Log lines for Python to take: one per kind of failure.
    messages: Vec<String>,
}

struct Shared {
    config: PushConfig,
    agent: Agent,
    auth: Option<String>,
    state: Mutex<State>,
    wake: Condvar,
    /// The kinds of failure already logged.
    logged: LogOnce,
}

/// What became of one attempt.
enum Outcome {
    Sent,
    /// Worth retrying (5xx, 429, connection and timeout errors), with the kind and the message.
    Retry(String, String),
    /// Refused for good (other 4xx): the batch is dropped.
    Refused(String, String),
}

pub struct Pusher {
    shared: Arc<Shared>,
}

/// Checks a push URL: `http` or `https`, with a host.
pub fn check_url(url: &str) -> Result<Uri> {
    let bad = |why: &str| ExporterError::InvalidPushConfig(format!("invalid push URL {url:?}: {why}"));
    let uri: Uri = url
        .parse()
        .map_err(|e: ureq::http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("the scheme must be http or https")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(uri)
}

fn agent(ca_file: Option<&str>) -> Result<Agent> {
    let mut tls = TlsConfig::builder();
    if let Some(path) = ca_file {
        let bad = |why: String| ExporterError::InvalidPushConfig(format!("CA file {path:?}: {why}"));
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut certs = Vec::new();
        for item in parse_pem(&pem) {
            if let PemItem::Certificate(cert) = item.map_err(|e| bad(e.to_string()))? {
                certs.push(cert);
            }
        }
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".to_string()));
        }
        tls = tls.root_certs(RootCerts::Specific(Arc::new(certs)));
    }
    Ok(Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .tls_config(tls.build())
        .build()
        .into())
}

fn check_headers(headers: &[(String, String)]) -> Result<()> {
    for (name, value) in headers {
        let name_ok = ureq::http::HeaderName::from_bytes(name.as_bytes()).is_ok();
        if !name_ok || ureq::http::HeaderValue::from_str(value).is_err() {
            return Err(ExporterError::InvalidPushConfig(format!(
                "invalid HTTP header {name:?}"
            )));
        }
    }
    Ok(())
}

impl Pusher {
    /// Checks the configuration (URL, headers, CA file) and starts the pushing thread.
    pub fn start(config: PushConfig) -> Result<Self> {
        check_url(&config.url)?;
        check_headers(&config.headers)?;
        let shared = Arc::new(Shared {
            agent: agent(config.ca_file.as_deref())?,
            auth: config.auth.header(),
            config,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            logged: LogOnce::default(),
        });
        // Not joined: at quit, a push that is still being retried must not keep Locust from exiting.
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("lpe-push".into())
            .spawn(move || worker.run())
            .map_err(|e| ExporterError::Internal(e.to_string()))?;
        Ok(Pusher { shared })
    }

    pub fn set_grouping(&self, grouping: Vec<(String, String)>) {
        self.shared.state.lock().grouping = grouping;
    }

    /// Asks for the final push now; it goes out once the push under way (if any) is done.
    pub fn request_final(&self) {
        self.shared.state.lock().final_requested = true;
        self.shared.wake.notify_all();
    }

    /// Waits until the final push was made (or given up on), or `timeout` passed; returns whether it was.
    pub fn wait_final(&self, timeout: Duration) -> bool {
        let mut s = self.shared.state.lock();
        self.shared.wake.wait_while_for(&mut s, |s| !s.final_done, timeout);
        s.final_done
    }

    pub fn take_messages(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.state.lock().messages)
    }

    pub fn stats(&self) -> Stats {
        self.shared.state.lock().stats
    }

    pub fn describe(&self) -> String {
        format!("{} to {}", self.shared.config.protocol.name(), self.shared.config.url)
    }

    /// Stops the thread; a push under way is abandoned at its next retry.
    pub fn stop(&self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_all();
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn run(&self) {
        let mut next = Instant::now() + self.config.interval;
        loop {
            let is_final = {
                let mut s = self.state.lock();
                while !s.stop && !s.final_requested && Instant::now() < next {
                    let _ = self.wake.wait_until(&mut s, next);
                }
                if s.stop {
                    return;
                }
                s.final_requested
            };
            next = Instant::now() + self.config.interval;
            // A regular push gives up when the next one is due; the final one only when stopped.
            self.push(if is_final { None } else { Some(next) });
            if is_final {
                self.state.lock().final_done = true;
                self.wake.notify_all();
                return;
            }
        }
    }

    fn batch(&self) -> Batch {
        let grouping = self.state.lock().grouping.clone();
        // This thread reads the registry without the GIL: through the fork gate, as renders do.
        let _pass = fork::enter();
        match self.config.protocol {
            Protocol::RemoteWrite { native } => {
                remote_write::batch(&self.config.node, &self.config.url, &self.config.instance, native)
            }
            Protocol::Pushgateway => pushgateway::batch(&self.config.node, &self.config.url, &grouping),
        }
    }

    /// Sends one fresh batch, retrying with backoff until `give_up` (or until stopped). A regular push
    /// also gives up when the final push is asked for: that one carries fresher values.
    fn push(&self, give_up: Option<Instant>) {
        let superseded = |s: &State| s.stop || (give_up.is_some() && s.final_requested);
        let batch = self.batch();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let outcome = self.send(&batch);
            let mut s = self.state.lock();
            let (kind, message, retry) = match outcome {
                Outcome::Sent => {
                    s.stats.sent += 1;
                    return;
                }
                Outcome::Retry(kind, message) => (kind, message, true),
                Outcome::Refused(kind, message) => (kind, message, false),
            };
            s.stats.failed += 1;
            if self.logged.first(&kind) {
                let name = self.config.protocol.name();
                let url = &self.config.url;
                s.messages
                    .push(format!("{name} to {url} failed: {message} (logged once per kind)"));
            }
            let wake_at = Instant::now() + backoff;
            let retrying = retry && give_up.is_none_or(|g| wake_at < g);
            if retrying {
                while !superseded(&s) && Instant::now() < wake_at {
                    let _ = self.wake.wait_until(&mut s, wake_at);
                }
            }
            if !retrying || superseded(&s) {
                s.stats.dropped_samples += batch.samples;
                return;
            }
            drop(s);
            backoff = (backoff * 2).min(self.config.interval.max(FIRST_BACKOFF));
        }
    }

    fn send(&self, batch: &Batch) -> Outcome {
        let mut request = match batch.method {
            "PUT" => self.agent.put(&batch.url),
            _ => self.agent.post(&batch.url),
        };
        for (name, value) in &batch.headers {
            request = request.header(*name, value);
        }
        for (name, value) in &self.config.headers {
            request = request.header(name, value);
        }
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth);
        }
        match request.send(&batch.body[..]) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                if response.status().is_success() {
                    return Outcome::Sent;
                }
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(ERROR_BODY)
                    .read_to_string()
                    .unwrap_or_default();
                let message = format!("HTTP {status} {}", body.trim());
                if status == 429 || status >= 500 {
                    Outcome::Retry(format!("HTTP {status}"), message)
                } else {
                    Outcome::Refused(format!("HTTP {status}"), message)
                }
            }
            Err(e) => {
                let text = e.to_string();
                // The variant's name (Io, ConnectionFailed, Timeout, ...) is the kind.
                let kind = format!("{e:?}").split(['(', ' ', '{']).next().unwrap_or("").to_string();
                Outcome::Retry(kind, text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:9090/api/v1/write").is_ok());
        assert!(check_url("https://example.com/push").is_ok());
        for bad in [
            "",
            "127.0.0.1:9090",
            "ftp://host/x",
            "http://",
            "http:// bad host/",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers() {
        let ok = [("X-Scope-OrgID".to_string(), "tenant-1".to_string())];
        assert!(check_headers(&ok).is_ok());
        for (name, value) in [("bad name", "v"), ("", "v"), ("X-Ok", "line\nbreak")] {
            assert!(
                check_headers(&[(name.to_string(), value.to_string())]).is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn basic_auth_header() {
        let auth = Auth::Basic {
            username: "Aladdin".into(),
            password: "open sesame".into(),
        };
        assert_eq!(auth.header().as_deref(), Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="));
        assert_eq!(Auth::Bearer("t".into()).header().as_deref(), Some("Bearer t"));
        assert_eq!(Auth::None.header(), None);
    }

    #[test]
    fn a_missing_ca_file_is_a_config_error() {
        assert!(matches!(
            agent(Some("/nonexistent/ca.pem")),
            Err(ExporterError::InvalidPushConfig(_))
        ));
    }
}
