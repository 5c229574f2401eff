//! Fork safety: when the process forks, no thread of ours is inside the registry, so no lock is
//! held by a thread the child does not have, and the child can record and render.
//!
//! Threads that take registry locks without the GIL (the server's renders, `render()`) pass through
//! this gate; Python's `os.register_at_fork` closes it before a fork and opens it after. Atomics only:
//! a lock here would itself be inherited in the state the fork found it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

static FORKING: AtomicBool = AtomicBool::new(false);
static INSIDE: AtomicUsize = AtomicUsize::new(0);
const WAIT: Duration = Duration::from_micros(200);

/// Held while a thread may take registry locks without the GIL.
pub struct Pass(());

/// Waits while a fork is under way, then lets the caller in.
pub fn enter() -> Pass {
    loop {
        while FORKING.load(Ordering::SeqCst) {
            std::thread::sleep(WAIT);
        }
        INSIDE.fetch_add(1, Ordering::SeqCst);
        if !FORKING.load(Ordering::SeqCst) {
            return Pass(());
        }
        INSIDE.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        INSIDE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Before a fork: closes the gate and waits for the threads inside (a render: milliseconds) to leave.
pub fn prepare() {
    FORKING.store(true, Ordering::SeqCst);
    while INSIDE.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(WAIT);
    }
}

/// After a fork, in the parent and in the child (where no thread is inside).
pub fn resume() {
    FORKING.store(false, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn prepare_waits_for_threads_inside_and_blocks_new_ones() {
        let pass = enter();
        let prepared = Arc::new(AtomicBool::new(false));
        let forker = {
            let prepared = prepared.clone();
            std::thread::spawn(move || {
                prepare();
                prepared.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !prepared.load(Ordering::SeqCst),
            "prepare returned while a thread was inside"
        );
        drop(pass);
        let _ = forker.join();
        assert!(prepared.load(Ordering::SeqCst));
        let entered = Arc::new(AtomicBool::new(false));
        let renderer = {
            let entered = entered.clone();
            std::thread::spawn(move || {
                let _pass = enter();
                entered.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!entered.load(Ordering::SeqCst), "entered while a fork was under way");
        resume();
        let _ = renderer.join();
        assert!(entered.load(Ordering::SeqCst));
    }
}
