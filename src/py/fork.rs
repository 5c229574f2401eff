//! The hooks Python's `os.register_at_fork` calls: no registry lock is held across a fork, and a
//! forked child (`locust --processes`) starts from zero without the parent's servers.

use pyo3::prelude::*;

use super::registry::reset_all_after_fork;
use super::server::forget_parent_servers;
use crate::fork;

/// Before a fork: waits until no thread of ours is inside a registry (see `fork`).
#[pyfunction]
pub fn before_fork(py: Python<'_>) {
    py.detach(fork::prepare);
}

#[pyfunction]
pub fn after_fork_in_parent() {
    fork::resume();
}

/// In a forked child: zero every value, forget the parent's servers, and close their listening sockets and
/// spare descriptors.
#[pyfunction]
pub fn after_fork_in_child() {
    fork::resume();
    forget_parent_servers();
    crate::server::forget_parent_sockets_after_fork();
    reset_all_after_fork();
}
