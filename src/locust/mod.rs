//! Locust's own metrics: the catalogue of built-in families, and how a request event is recorded.

pub mod builtin;
pub mod requests;
