//! The listening sockets of this process's servers, listed so that a forked child can close its copies:
//! otherwise a child (`locust --processes`) would keep a parent's port bound after the parent closed it.

#[cfg(unix)]
mod list {
    use std::net::TcpListener;
    use std::os::fd::{AsRawFd, RawFd};

    use parking_lot::Mutex;

    use crate::fork;

    /// Taken only inside the fork gate, so that no fork finds it locked.
    static LISTED: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

    /// One server's listening socket, listed while the server serves.
    pub struct Listed(RawFd);

    impl Listed {
        pub fn new(listener: &TcpListener) -> Self {
            let fd = listener.as_raw_fd();
            let _pass = fork::enter();
            LISTED.lock().push(fd);
            Listed(fd)
        }
    }

    impl Drop for Listed {
        fn drop(&mut self) {
            let _pass = fork::enter();
            LISTED.lock().retain(|fd| *fd != self.0);
        }
    }

    /// In a forked child, the only thread, while the parent's server handles are forgotten, never dropped.
    pub fn close_after_fork() {
        for fd in std::mem::take(&mut *LISTED.lock()) {
            // SAFETY: the descriptor is the child's copy of a listening socket that nothing in the child
            // uses: the parent's server objects are never dropped here, so it is closed once.
            unsafe {
                libc::close(fd);
            }
        }
    }
}

#[cfg(not(unix))]
mod list {
    use std::net::TcpListener;

    /// No fork, nothing to list.
    pub struct Listed;

    impl Listed {
        pub fn new(_: &TcpListener) -> Self {
            Listed
        }
    }

    pub fn close_after_fork() {}
}

pub use list::{close_after_fork, Listed};
