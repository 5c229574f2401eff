//! Logging a recurring failure once per kind: the rule every part of the core follows, so that an error
//! that happens at every request, push or report does not flood the log (each one is still counted).

use std::collections::HashSet;

use parking_lot::Mutex;

/// The kinds of failure already logged by one owner (a server, a pusher, a metric family).
#[derive(Default)]
pub struct LogOnce {
    kinds: Mutex<HashSet<String>>,
}

impl LogOnce {
    /// Whether `kind` is new: true the first time only.
    pub fn first(&self, kind: &str) -> bool {
        let mut kinds = self.kinds.lock();
        !kinds.contains(kind) && kinds.insert(kind.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_once() {
        let once = LogOnce::default();
        assert!(once.first("a"));
        assert!(!once.first("a"));
        assert!(once.first("b"));
    }
}
