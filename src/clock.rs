//! The process's monotonic clock as plain numbers: for Python (the final scrape's mark) and for atomics.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Nanoseconds from the clock's start (its first use in the process) to `t`.
pub fn to_nanos(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(*start()).as_nanos()).unwrap_or(u64::MAX)
}

pub fn from_nanos(nanos: u64) -> Instant {
    *start() + Duration::from_nanos(nanos)
}

fn start() -> &'static Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip() {
        let _ = to_nanos(Instant::now()); // starts the clock
        let t = Instant::now();
        let back = from_nanos(to_nanos(t));
        assert!(back <= t && t - back < Duration::from_micros(1));
    }
}
