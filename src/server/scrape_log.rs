//! When `/metrics` was scraped: a server notes each scrape's start and answer, so that the end of
//! a run can wait for one scrape that started after the test stopped (the final scrape).

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
struct State {
    first_start: Option<Instant>,
    last_start: Option<Instant>,
    started: u64,
    /// The start of the latest-started scrape that was answered.
    answered_start: Option<Instant>,
}

pub struct ScrapeLog {
    state: Mutex<State>,
    answered: Condvar,
}

impl ScrapeLog {
    pub const fn new() -> Self {
        ScrapeLog {
            state: Mutex::new(State {
                first_start: None,
                last_start: None,
                started: 0,
                answered_start: None,
            }),
            answered: Condvar::new(),
        }
    }

    /// Notes a scrape starting now; hand the result to [`ScrapeLog::answered`] once it is answered.
    pub fn start(&self) -> Instant {
        let now = Instant::now();
        let mut s = self.state.lock();
        s.first_start.get_or_insert(now);
        s.last_start = Some(now);
        s.started += 1;
        now
    }

    /// Notes that the scrape that started at `started` has been answered in full.
    pub fn answered(&self, started: Instant) {
        let mut s = self.state.lock();
        if s.answered_start.is_none_or(|t| started > t) {
            s.answered_start = Some(started);
        }
        drop(s);
        self.answered.notify_all();
    }

    /// How many scrapes started, and the scrape interval as seen: the mean interval between their
    /// starts, or with a single scrape the time since it (the interval is at least that long).
    pub fn seen(&self) -> (u64, Option<Duration>) {
        let s = self.state.lock();
        let interval = match (s.first_start, s.last_start) {
            (Some(first), Some(last)) if s.started >= 2 => {
                let gaps = u32::try_from(s.started - 1).unwrap_or(u32::MAX);
                Some(last.duration_since(first) / gaps)
            }
            (_, Some(last)) => Some(last.elapsed()),
            _ => None,
        };
        (s.started, interval)
    }

    /// Blocks until a scrape that started after `since` has been answered, or `timeout` passed;
    /// returns whether one was.
    pub fn wait_answered_after(&self, since: Instant, timeout: Duration) -> bool {
        let answered = |s: &mut State| s.answered_start.is_some_and(|t| t > since);
        let mut s = self.state.lock();
        self.answered.wait_while_for(&mut s, |s| !answered(s), timeout);
        answered(&mut s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_and_mean_interval() {
        let log = ScrapeLog::new();
        assert_eq!(log.seen(), (0, None));
        let a = log.start();
        std::thread::sleep(Duration::from_millis(20));
        let (n, since) = log.seen();
        assert_eq!(n, 1);
        assert!(since.is_some_and(|i| i >= Duration::from_millis(20)), "{since:?}");
        log.answered(a);
        let _ = log.start();
        let (n, interval) = log.seen();
        assert_eq!(n, 2);
        assert!(interval.is_some_and(|i| i >= Duration::from_millis(20)), "{interval:?}");
    }

    #[test]
    fn waits_for_a_scrape_started_after_the_mark() {
        let log = Arc::new(ScrapeLog::new());
        let before = log.start();
        let mark = Instant::now();
        log.answered(before);
        // Answered, but started before the mark: does not count.
        assert!(!log.wait_answered_after(mark, Duration::from_millis(30)));
        let waiter = {
            let log = log.clone();
            std::thread::spawn(move || log.wait_answered_after(mark, Duration::from_secs(10)))
        };
        std::thread::sleep(Duration::from_millis(20));
        let after = log.start();
        log.answered(after);
        assert!(matches!(waiter.join(), Ok(true)));
        // An older scrape answered late does not move the mark back.
        log.answered(before);
        assert!(log.wait_answered_after(mark, Duration::ZERO));
    }
}
