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

    /// Notes a scrape that started at `at`, once answered 200 (so not always in order of start); [`ScrapeLog::answered`]
    /// follows once its body is handed over.
    pub fn start(&self, at: Instant) {
        let mut s = self.state.lock();
        s.first_start = Some(s.first_start.map_or(at, |t| t.min(at)));
        s.last_start = Some(s.last_start.map_or(at, |t| t.max(at)));
        s.started += 1;
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
        let a = Instant::now();
        log.start(a);
        std::thread::sleep(Duration::from_millis(20));
        let (n, since) = log.seen();
        assert_eq!(n, 1);
        assert!(since.is_some_and(|i| i >= Duration::from_millis(20)), "{since:?}");
        log.answered(a);
        log.start(Instant::now());
        let (n, interval) = log.seen();
        assert_eq!(n, 2);
        assert!(interval.is_some_and(|i| i >= Duration::from_millis(20)), "{interval:?}");
    }

    #[test]
    fn waits_for_a_scrape_started_after_the_mark() {
        let log = Arc::new(ScrapeLog::new());
        let before = Instant::now();
        log.start(before);
        let mark = Instant::now();
        log.answered(before);
        // Answered, but started before the mark: does not count.
        assert!(!log.wait_answered_after(mark, Duration::from_millis(30)));
        let waiter = {
            let log = log.clone();
            std::thread::spawn(move || log.wait_answered_after(mark, Duration::from_secs(10)))
        };
        std::thread::sleep(Duration::from_millis(20));
        let after = Instant::now();
        log.start(after);
        log.answered(after);
        assert!(matches!(waiter.join(), Ok(true)));
        // An older scrape answered late does not move the mark back.
        log.answered(before);
        assert!(log.wait_answered_after(mark, Duration::ZERO));
    }
}
