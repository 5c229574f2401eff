//! Basic auth against a web config's `basic_auth_users` (user → bcrypt hash).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::prelude::{Engine, BASE64_STANDARD};
use parking_lot::Mutex;
use subtle::ConstantTimeEq;

/// The `WWW-Authenticate` of a 401.
pub const CHALLENGE: &str = "Basic realm=\"locust-prometheus-exporter\"";

/// Successful checks remembered: a user or two, each with the password it scrapes with.
const CACHED: usize = 64;

/// Failed checks remembered, each for `FAILED_FOR`: a client retrying a wrong password costs one bcrypt
/// check a minute, not one per request. (The toolkit remembers both kinds, 100 in all.)
const FAILED: usize = 1024;
const FAILED_FOR: Duration = Duration::from_secs(60);

/// The longest wait for a turn at bcrypt: past it the request is answered 503 rather than held, so a flood of
/// wrong passwords cannot queue up for minutes.
pub const TURN_WAIT: Duration = Duration::from_secs(5);

type Key = [u8; 32];

/// What a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// No turn at bcrypt within `TURN_WAIT`.
    Busy,
}

pub struct Users {
    hashes: BTreeMap<String, String>,
    /// SHA-256 of (user, password) of checks that succeeded with these hashes. A bcrypt check costs
    /// tens of milliseconds of CPU by design: a scrape every second would otherwise pay it each time.
    /// It lives as long as these hashes do (a changed file makes new `Users`).
    passed: Mutex<VecDeque<Key>>,
    /// Keys of checks that failed, oldest first, with when.
    failed: Mutex<VecDeque<(Key, Instant)>>,
    /// One bcrypt check at a time, as in the toolkit: a flood of wrong passwords leaves the render
    /// pool's other thread to scrapes.
    bcrypt: tokio::sync::Semaphore,
}

impl Users {
    /// `None` when there are no users: no basic auth.
    pub fn new(hashes: BTreeMap<String, String>) -> Option<Arc<Users>> {
        (!hashes.is_empty()).then(|| {
            Arc::new(Users {
                hashes,
                passed: Mutex::new(VecDeque::new()),
                failed: Mutex::new(VecDeque::new()),
                bcrypt: tokio::sync::Semaphore::new(1),
            })
        })
    }

    /// Whether an `Authorization` header carries the password of a user.
    pub async fn check(self: &Arc<Self>, authorization: &str) -> Verdict {
        let Some((user, password)) = credentials(authorization) else {
            return Verdict::Fail;
        };
        let key = key(&user, &password);
        if let Some(known) = self.known(&key) {
            return known;
        }
        let Ok(Ok(_turn)) = tokio::time::timeout(TURN_WAIT, self.bcrypt.acquire()).await else {
            return Verdict::Busy;
        };
        // Checked by another request while this one waited its turn.
        if let Some(known) = self.known(&key) {
            return known;
        }
        let users = self.clone();
        // bcrypt is slow on purpose: off the server's thread, which keeps serving meanwhile.
        let ok = tokio::task::spawn_blocking(move || users.verify(&user, &password))
            .await
            .unwrap_or(false);
        if ok {
            let mut passed = self.passed.lock();
            if passed.len() >= CACHED {
                passed.pop_front();
            }
            passed.push_back(key);
            Verdict::Pass
        } else {
            let mut failed = self.failed.lock();
            if failed.len() >= FAILED {
                failed.pop_front();
            }
            failed.push_back((key, Instant::now()));
            Verdict::Fail
        }
    }

    /// The verdict of an earlier check of the same key, if remembered.
    fn known(&self, key: &Key) -> Option<Verdict> {
        if self.remembered(key) {
            return Some(Verdict::Pass);
        }
        let mut failed = self.failed.lock();
        while failed.front().is_some_and(|(_, at)| at.elapsed() >= FAILED_FOR) {
            failed.pop_front();
        }
        failed.iter().any(|(k, _)| k == key).then_some(Verdict::Fail)
    }

    /// Compared with every entry, in constant time each: how long it takes tells nothing of the key.
    fn remembered(&self, key: &Key) -> bool {
        let found = self
            .passed
            .lock()
            .iter()
            .fold(subtle::Choice::from(0), |found, k| found | k.ct_eq(key));
        found.into()
    }

    fn verify(&self, user: &str, password: &[u8]) -> bool {
        // An unknown user costs a bcrypt check too (against any user's hash, to take as long), so that
        // the answer's delay does not tell which users exist.
        let (known, hash) = match self.hashes.get(user) {
            Some(hash) => (true, hash),
            None => match self.hashes.values().next() {
                Some(hash) => (false, hash),
                None => return false,
            },
        };
        let matches = bcrypt::verify(password, hash).unwrap_or(false);
        known && matches
    }
}

fn key(user: &str, password: &[u8]) -> Key {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    // The user's length first: ("ab", "c") and ("a", "bc") are different keys.
    context.update(&(user.len() as u64).to_le_bytes());
    context.update(user.as_bytes());
    context.update(password);
    let mut key = [0u8; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

/// (user, password) of `Basic base64(user:password)`.
fn credentials(header: &str) -> Option<(String, Vec<u8>)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64_STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_parsed_from_the_header() {
        let header = |s: &str| format!("Basic {}", BASE64_STANDARD.encode(s));
        assert_eq!(
            credentials(&header("alice:s3:cret")),
            Some(("alice".into(), b"s3:cret".to_vec()))
        );
        assert_eq!(credentials(&header("alice:")), Some(("alice".into(), Vec::new())));
        assert_eq!(credentials(&header("alice")), None);
        assert_eq!(credentials("Bearer abc"), None);
        assert_eq!(credentials("Basic !!!"), None);
        assert_ne!(key("ab", b"c"), key("a", b"bc"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn checks_are_remembered() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let users = Users::new(BTreeMap::from([("alice".to_string(), hash)])).unwrap();
        let header = |s: &str| format!("Basic {}", BASE64_STANDARD.encode(s));
        assert_eq!(users.check(&header("alice:wrong")).await, Verdict::Fail);
        assert_eq!(users.check(&header("bob:pw")).await, Verdict::Fail);
        assert!(users.passed.lock().is_empty());
        assert_eq!(users.known(&key("alice", b"wrong")), Some(Verdict::Fail));
        assert_eq!(users.check(&header("alice:pw")).await, Verdict::Pass);
        assert_eq!(users.known(&key("alice", b"pw")), Some(Verdict::Pass));
        assert_eq!(users.known(&key("alice", b"pw2")), None);
        assert_eq!(users.check(&header("alice:pw")).await, Verdict::Pass);
        assert_eq!(users.passed.lock().len(), 1);
        assert_eq!(users.failed.lock().len(), 2);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_check_that_gets_no_turn_in_time_is_busy() {
        let users = Users::new(BTreeMap::from([("alice".to_string(), bcrypt::hash("pw", 4).unwrap())])).unwrap();
        let _held = users.bcrypt.acquire().await.unwrap();
        let header = format!("Basic {}", BASE64_STANDARD.encode("alice:pw"));
        assert_eq!(users.check(&header).await, Verdict::Busy);
    }
}
