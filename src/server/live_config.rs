//! A web config as the server applies it. The file and the files it names are checked at most once a
//! second, by content: a rotated certificate or a changed user takes effect within a second, without a
//! restart. Security fails closed: whatever the file on disk holds that the server cannot serve by (not
//! valid, or without the TLS or basic auth the server started with) makes every request fail until it is
//! valid again; nothing is served on a config the file no longer states.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::header::{HeaderName, HeaderValue};
use parking_lot::Mutex;
use tokio_rustls::TlsAcceptor;

use super::auth::Users;
use super::tls;
use super::web_config::{self, RateLimit};
use crate::errors::{ExporterError, Result};

/// How often the files are read again, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// One version of the web config, ready to serve with.
pub struct Applied {
    pub tls: Option<TlsAcceptor>,
    pub users: Option<Arc<Users>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    limiter: Option<(RateLimit, Mutex<Bucket>)>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Applied {
    fn new(path: &Path, config: web_config::WebConfig) -> Result<Applied> {
        let tls = match config.tls {
            Some(settings) => Some(TlsAcceptor::from(tls::server_config(settings).map_err(|problem| {
                ExporterError::WebConfig {
                    path: path.display().to_string(),
                    problem: format!("tls_server_config: {problem}"),
                    tls_material: true,
                }
            })?)),
            None => None,
        };
        let limiter = config.rate_limit.map(|limit| {
            let bucket = Bucket {
                tokens: f64::from(limit.burst),
                at: Instant::now(),
            };
            (limit, Mutex::new(bucket))
        });
        Ok(Applied {
            tls,
            users: Users::new(config.users),
            headers: config.headers,
            limiter,
        })
    }

    /// `rate_limit`: a token bucket of `burst` requests, refilled by one every `interval`.
    pub fn allow(&self) -> bool {
        let Some((limit, bucket)) = &self.limiter else {
            return true;
        };
        let mut bucket = bucket.lock();
        let now = Instant::now();
        let refill = now.duration_since(bucket.at).as_secs_f64() / limit.interval.as_secs_f64();
        bucket.tokens = (bucket.tokens + refill).min(f64::from(limit.burst));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the server answers with now.
#[derive(Clone)]
pub enum Live {
    Valid(Arc<Applied>),
    /// The file holds no config to serve by: every request is answered 500. The handshake (with TLS) uses
    /// the last valid certificate, so that clients see that 500, unless the file's TLS material is what
    /// is unusable: then it fails.
    Invalid(Option<TlsAcceptor>),
}

impl Live {
    pub fn tls(&self) -> Option<&TlsAcceptor> {
        match self {
            Live::Valid(active) => active.tls.as_ref(),
            Live::Invalid(tls) => tls.as_ref(),
        }
    }
}

/// A reload, for `locust_exporter_web_config_reloads_total{result}`: `Err` holds the error to log.
pub type Reloaded = std::result::Result<(), ExporterError>;

/// SHA-256 of every file's path and content (or absence).
type Digest = [u8; 32];

fn digest(files: &[PathBuf]) -> Digest {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for file in files {
        let path = file.as_os_str().as_encoded_bytes();
        context.update(&(path.len() as u64).to_le_bytes());
        context.update(path);
        match std::fs::read(file) {
            Ok(content) => {
                context.update(&[1]);
                context.update(&(content.len() as u64).to_le_bytes());
                context.update(&content);
            }
            Err(_) => context.update(&[0]),
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

struct State {
    files: Vec<PathBuf>,
    digest: Digest,
    checked: Instant,
    live: Live,
    /// The certificate of the last valid config, for the 500s of an invalid one.
    last_tls: Option<TlsAcceptor>,
}

pub struct LiveConfig {
    path: PathBuf,
    /// TLS and basic auth as the server started: every later config must have them too (TLS cannot be
    /// taken up later either: the port speaks what it started with).
    tls: bool,
    auth: bool,
    state: Mutex<State>,
}

impl LiveConfig {
    /// Reads the file now: an error here stops the server from starting.
    pub fn load(path: &Path) -> Result<LiveConfig> {
        let mut files = Vec::new();
        let active = Applied::new(path, web_config::load(path, &mut files)?)?;
        let (tls, auth) = (active.tls.is_some(), active.users.is_some());
        let state = State {
            digest: digest(&files),
            files,
            checked: Instant::now(),
            last_tls: active.tls.clone(),
            live: Live::Valid(Arc::new(active)),
        };
        Ok(LiveConfig {
            path: path.to_path_buf(),
            tls,
            auth,
            state: Mutex::new(state),
        })
    }

    /// Whether the server serves TLS (fixed when it started).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The config to serve by now, and the reload this call made, if any (the files changed).
    pub fn current(&self) -> (Live, Option<Reloaded>) {
        let mut state = self.state.lock();
        if state.checked.elapsed() < CHECK_EVERY {
            return (state.live.clone(), None);
        }
        state.checked = Instant::now();
        let now = digest(&state.files);
        if now == state.digest {
            return (state.live.clone(), None);
        }
        // Digested before reading: a change during the read is seen by the next check.
        let mut files = Vec::new();
        let reloaded = self.reload(&mut files);
        state.digest = if files == state.files { now } else { digest(&files) };
        state.files = files;
        let reloaded = match reloaded {
            Ok(active) => {
                state.last_tls = active.tls.clone();
                state.live = Live::Valid(Arc::new(active));
                Ok(())
            }
            Err(e) => {
                let tls_material = matches!(
                    e,
                    ExporterError::WebConfig { tls_material: true, .. }
                        | ExporterError::WebConfigFile { tls_material: true, .. }
                );
                state.live = Live::Invalid(if tls_material { None } else { state.last_tls.clone() });
                Err(e)
            }
        };
        (state.live.clone(), Some(reloaded))
    }

    /// The file read again: valid, and with TLS and basic auth if the server started with them.
    fn reload(&self, files: &mut Vec<PathBuf>) -> Result<Applied> {
        let bad = |problem: &str| ExporterError::WebConfig {
            path: self.path.display().to_string(),
            problem: problem.to_string(),
            tls_material: false,
        };
        let config = web_config::load(&self.path, files)?;
        // The toolkit reads an empty file as no TLS and no users; here it is a file caught mid-write, or cleared.
        if std::fs::read(&self.path).is_ok_and(|text| text.trim_ascii().is_empty()) {
            return Err(bad("the file is empty"));
        }
        let active = Applied::new(&self.path, config)?;
        if active.tls.is_some() != self.tls {
            return Err(bad(if self.tls {
                "tls_server_config: the server started with TLS, which a reload cannot turn off"
            } else {
                "tls_server_config: the server started without TLS, which takes a restart to turn on"
            }));
        }
        if self.auth && active.users.is_none() {
            return Err(bad(
                "basic_auth_users: the server started with basic auth, which a reload cannot turn off",
            ));
        }
        Ok(active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(live: &Live) -> &Arc<Applied> {
        match live {
            Live::Valid(active) => active,
            Live::Invalid(_) => panic!("invalid"),
        }
    }

    #[test]
    fn reloads_by_content_at_most_once_a_second_and_fails_closed() {
        let dir = std::env::temp_dir().join(format!("lpe-web-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("web.yml");
        let hash = bcrypt::hash("pw", 4).unwrap();
        let config =
            |burst: u32| format!("basic_auth_users:\n  alice: {hash}\nrate_limit:\n  interval: 1h\n  burst: {burst}\n");
        std::fs::write(&path, config(2)).unwrap();
        let web = LiveConfig::load(&path).unwrap();
        let (first, reloaded) = web.current();
        assert!(reloaded.is_none());
        let first = valid(&first).clone();
        assert_eq!([first.allow(), first.allow(), first.allow()], [true, true, false]);
        // The same size: a change of content all the same, seen at the next check.
        std::fs::write(&path, config(3)).unwrap();
        assert!(web.current().1.is_none(), "checked again within the second");
        web.state.lock().checked -= CHECK_EVERY;
        let (second, reloaded) = web.current();
        assert!(matches!(reloaded, Some(Ok(()))));
        let second = valid(&second).clone();
        assert_eq!(
            (0..4).map(|_| second.allow()).collect::<Vec<_>>(),
            [true, true, true, false]
        );
        for (text, words) in [
            ("rate_limit:\n  interval: 1h\n  burst: 3\n", "basic_auth_users"),
            ("", "empty"),
            ("unknown: 1\n", "unknown field"),
        ] {
            std::fs::write(&path, text).unwrap();
            web.state.lock().checked -= CHECK_EVERY;
            let (live, reloaded) = web.current();
            assert!(matches!(live, Live::Invalid(None)), "{text}");
            let error = reloaded.unwrap().unwrap_err().to_string();
            assert!(error.contains(words), "{error}");
            web.state.lock().checked -= CHECK_EVERY;
            assert!(web.current().1.is_none(), "unchanged: no reload");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
