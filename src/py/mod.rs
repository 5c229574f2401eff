//! The Python-facing classes and functions; argument handling only, the work is in the core.

pub mod end_of_run;
pub mod listener;
pub mod metric;
pub mod server;
