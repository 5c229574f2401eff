//! The server's own counters: responses by status code and connections it had to drop.
//! The series are made when the server starts, so counting is one atomic add and takes no lock.

use std::sync::Arc;

use crate::errors::Result;
use crate::locust::builtin::{Builtin, CONNECTIONS_DROPPED, HTTP_REQUESTS};
use crate::metrics::{Counter, Family, Kind, Registry, Series};

/// Every status the server answers with: its own, and hyper's answers to unparsable requests.
const CODES: [u16; 8] = [200, 400, 401, 404, 405, 429, 431, 500];

/// Why a connection was closed before it was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Already `connections` open: closed at once.
    Limit,
    /// The request head did not arrive in time.
    HeadTimeout,
    /// The client did not read its response in time.
    WriteTimeout,
    /// The request head was too large (answered 431).
    TooLarge,
    /// Not HTTP/1 (answered 400).
    Malformed,
    /// `accept()` failed (out of descriptors, or the client gave up first).
    AcceptError,
    /// The TLS handshake failed (no or a refused client certificate, no common version or suite).
    Handshake,
}

const REASONS: [(Dropped, &str); 7] = [
    (Dropped::Limit, "limit"),
    (Dropped::HeadTimeout, "head_timeout"),
    (Dropped::WriteTimeout, "write_timeout"),
    (Dropped::TooLarge, "too_large"),
    (Dropped::Malformed, "malformed"),
    (Dropped::AcceptError, "accept_error"),
    (Dropped::Handshake, "tls_handshake"),
];

pub struct Stats {
    responses: Vec<(u16, Arc<Series<Counter>>)>,
    dropped: Vec<(Dropped, Arc<Series<Counter>>)>,
}

impl Stats {
    /// Finds or registers the two families, with every series at zero.
    pub fn register(registry: &Registry) -> Result<Self> {
        let family = |builtin: &Builtin| -> Result<Arc<Family<Counter>>> {
            registry.get_or_register(builtin.desc(Kind::Counter)?)
        };
        let responses = family(&HTTP_REQUESTS)?;
        let dropped = family(&CONNECTIONS_DROPPED)?;
        Ok(Stats {
            responses: CODES
                .iter()
                .map(|c| Ok((*c, responses.child(&[c.to_string()])?)))
                .collect::<Result<_>>()?,
            dropped: REASONS
                .iter()
                .map(|(r, name)| Ok((*r, dropped.child(&[name])?)))
                .collect::<Result<_>>()?,
        })
    }

    pub fn response(&self, code: u16) {
        if let Some((_, s)) = self.responses.iter().find(|(c, _)| *c == code) {
            s.inc(1.0);
        }
    }

    pub fn dropped(&self, reason: Dropped) {
        if let Some((_, s)) = self.dropped.iter().find(|(r, _)| *r == reason) {
            s.inc(1.0);
        }
    }
}
