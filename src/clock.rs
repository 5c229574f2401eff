//! The process's clocks as plain numbers: the monotonic one (for Python's final-scrape mark and for
//! atomics), and wall-clock Unix time (gauges' update stamps, `set_to_current_time`, pushed samples).

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Unix time in seconds.
pub fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Unix time in milliseconds, as remote write stamps samples.
pub fn unix_millis() -> i64 {
    (unix_seconds() * 1000.0) as i64
}

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
