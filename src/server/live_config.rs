//! A web config as the server applies it, reloaded when the file or a file it names changes:
//! rotated certificates and changed users take effect without a restart, as in the toolkit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use hyper::header::{HeaderName, HeaderValue};
use parking_lot::Mutex;
use tokio_rustls::TlsAcceptor;

use super::auth::Users;
use super::tls;
use super::web_config::{self, RateLimit};
use crate::errors::{ExporterError, Result};

/// One version of the web config, applied: ready to serve with.
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
    fn load(path: &Path) -> Result<(Applied, Vec<PathBuf>)> {
        let config = web_config::load(path)?;
        let tls = match config.tls {
            Some(settings) => Some(TlsAcceptor::from(tls::server_config(settings).map_err(|problem| {
                ExporterError::WebConfig {
                    path: path.display().to_string(),
                    problem: format!("tls_server_config: {problem}"),
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
        let active = Applied {
            tls,
            users: Users::new(config.users),
            headers: config.headers,
            limiter,
        };
        Ok((active, config.files))
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

/// What identifies a version of a file: its modification time and size (`None`: unreadable).
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(files: &[PathBuf]) -> Stamp {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

struct Current {
    files: Vec<PathBuf>,
    stamp: Stamp,
    active: Arc<Applied>,
}

pub struct LiveConfig {
    path: PathBuf,
    current: Mutex<Current>,
}

impl LiveConfig {
    /// Reads the file now: an error here stops the server from starting.
    pub fn load(path: &Path) -> Result<LiveConfig> {
        let (active, files) = Applied::load(path)?;
        let current = Current {
            stamp: stamp(&files),
            files,
            active: Arc::new(active),
        };
        Ok(LiveConfig {
            path: path.to_path_buf(),
            current: Mutex::new(current),
        })
    }

    /// The config to use now: reloaded if a file changed (a few `stat` calls otherwise). A changed
    /// file that is not valid is reported once, and the last valid config stays in use.
    pub fn current(&self) -> Arc<Applied> {
        let mut current = self.current.lock();
        let now = stamp(&current.files);
        if now == current.stamp {
            return current.active.clone();
        }
        // Stamped before reading: a change during the read is seen by the next call.
        current.stamp = now;
        match Applied::load(&self.path) {
            Ok((active, files)) => {
                current.files = files;
                current.active = Arc::new(active);
            }
            Err(e) => eprintln!("locust-prometheus-exporter: {e}; the previous web config stays in use"),
        }
        current.active.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloads_when_the_file_changes_and_keeps_the_last_valid_config() {
        let dir = std::env::temp_dir().join(format!("lpe-web-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("web.yml");
        std::fs::write(&path, "rate_limit:\n  interval: 1h\n  burst: 2\n").unwrap();
        let web = LiveConfig::load(&path).unwrap();
        let first = web.current();
        assert!(Arc::ptr_eq(&first, &web.current()), "unchanged: the same config");
        assert_eq!([first.allow(), first.allow(), first.allow()], [true, true, false]);
        // A different size is a change whatever the file system's time granularity.
        std::fs::write(&path, "rate_limit:\n  interval: 1h\n  burst: 3\n").unwrap();
        let second = web.current();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(
            (0..4).map(|_| second.allow()).collect::<Vec<_>>(),
            [true, true, true, false]
        );
        std::fs::write(&path, "rate_limit:\n  interval: 1h\n  burst: 3\n  unknown: 1\n").unwrap();
        assert!(
            Arc::ptr_eq(&second, &web.current()),
            "an invalid change keeps the last valid config"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
