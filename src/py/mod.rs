//! The Python-facing classes and functions; argument handling only, the work is in the core.

pub mod fork;
pub mod listener;
pub mod metric;
pub mod push;
pub mod registry;
pub mod server;
pub mod timer;
